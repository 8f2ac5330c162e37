//! The anomaly detector (one per database): reads the feed, the log's
//! tail or (with NATS) a durable JetStream consumer, runs the detectors of
//! `keyledger_app::anomalies` over every license's events, and records
//! each finding as a `RecordAnomaly` command on the license (actor
//! `system`), which the license refuses while an anomaly of that kind is
//! open, so an episode is recorded once. It also keeps the `anomalies`
//! table equal to the AnomalyDetected and AnomalyResolved events it reads.
//!
//! What the detectors remember is in memory. A license met for the first
//! time since start (or after being forgotten for an idle hour) has its
//! latest events read from the log first. Findings among them are recorded
//! too: the license refuses one whose trigger it has recorded already, so
//! reading an event twice costs a command, never a second anomaly.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyledger_app::anomalies::settings::MAX_TRAILING_HOURS;
use keyledger_app::anomalies::{
    Action, Anomaly, AnomalySettings, AnomalyStore, Detector, Finding, Observed, Resolution, SettingsCache, Surges,
};
use keyledger_app::metadata::system_metadata;
use keyledger_app::{CommandError, LicenseService};
use keyledger_domain::{AnomalyEvidence, AnomalyKind, AutoSuspend, LicenseCommand, LicenseEvent};
use keyledger_eventlog::EventLog;
use serde::Deserialize;
use serde_json::Value;

use crate::feed::{flush, AnyFeed, Feed, Source};
use crate::runtime::{Consumer, ConsumerError, Step};

pub const ANOMALY_DETECTOR: &str = "anomaly-detector";
/// Envelopes taken from the feed at a time.
const BATCH: usize = 500;
/// How many of a license's latest events are read to catch up on it.
const CATCH_UP_EVENTS: i64 = 2_000;
/// A license with no event for this long (in event time) is forgotten,
/// and read again when it has one.
const FORGET_AFTER: chrono::Duration = chrono::Duration::hours(1);
/// Steps between sweeps of forgotten licenses.
const FORGET_EVERY: u64 = 200;

pub struct AnomalyWorker {
    source: Source,
    log: EventLog,
    licenses: Arc<LicenseService>,
    settings: Arc<SettingsCache>,
    store: AnomalyStore,
    feed: Option<AnyFeed>,
    detector: Detector,
    /// Tenants' activations per hour, for the tenant-wide surge.
    surges: Surges,
    /// Steps since idle licenses were last forgotten.
    steps: u64,
}

/// One envelope's fields, decoded.
struct Envelope<'a> {
    event_id: &'a str,
    license_id: &'a str,
    tenant_id: &'a str,
    sequence: i64,
    position: i64,
    occurred_at: DateTime<Utc>,
    client_ip: Option<&'a str>,
    actor: Option<&'a str>,
    event: LicenseEvent,
}

fn parse(envelope: &Value) -> Option<Envelope<'_>> {
    let event_type = envelope["type"].as_str()?;
    // Read in place as `{type: data}`, the stored payload's shape,
    // without copying `data` into such a map first.
    let tagged = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(std::iter::once((
        event_type,
        &envelope["data"],
    )));
    let event = LicenseEvent::deserialize(serde::de::value::MapAccessDeserializer::new(tagged)).ok()?;
    Some(Envelope {
        event_id: envelope["eventId"].as_str()?,
        license_id: envelope["licenseId"].as_str()?,
        tenant_id: envelope["tenantId"].as_str()?,
        sequence: envelope["sequence"].as_i64()?,
        position: envelope["position"].as_i64().unwrap_or_default(),
        occurred_at: envelope["occurredAt"].as_str()?.parse().ok()?,
        client_ip: envelope["metadata"]["client_ip"].as_str(),
        actor: envelope["metadata"]["actor_key_id"].as_str(),
        event,
    })
}

impl AnomalyWorker {
    pub fn new(source: Source, log: EventLog, licenses: Arc<LicenseService>, settings: Arc<SettingsCache>) -> Self {
        let store = settings.store().clone();
        Self {
            source,
            log,
            licenses,
            settings,
            store,
            feed: None,
            detector: Detector::default(),
            surges: Surges::default(),
            steps: 0,
        }
    }

    /// Observes the events of `license_id` between what the detector has
    /// seen and `before`; returns their findings.
    async fn catch_up(
        &mut self,
        license_id: &str,
        before: i64,
        settings: &AnomalySettings,
    ) -> Result<Vec<Finding>, ConsumerError> {
        let seen = self.detector.last_sequence(license_id).unwrap_or(0);
        let from = (seen + 1).max(before - CATCH_UP_EVENTS);
        let mut findings = Vec::new();
        if from >= before {
            return Ok(findings);
        }
        for logged in self.log.sequences(license_id, from, before - 1).await? {
            let Ok(event) = LicenseEvent::deserialize(&logged.payload) else { continue };
            let Some(occurred_at) = logged.metadata["occurred_at"].as_str().and_then(|at| at.parse().ok()) else {
                continue;
            };
            let observed = Observed {
                event_id: &logged.event_id,
                license_id,
                sequence: logged.sequence,
                occurred_at,
                client_ip: logged.metadata["client_ip"].as_str(),
                event: &event,
            };
            findings.extend(self.detector.observe(observed, settings, true));
        }
        Ok(findings)
    }

    /// Counts an activation toward its tenant's hourly rate; a new surge
    /// is a finding on the license whose activation passed the threshold.
    fn surge(&mut self, envelope: &Envelope<'_>, settings: &AnomalySettings) -> Option<Finding> {
        let LicenseEvent::LicenseActivated { .. } = envelope.event else { return None };
        let rule = &settings.unusual_activation_pattern.tenant_surge;
        let surge = self.surges.activation(envelope.tenant_id, envelope.event_id, envelope.occurred_at, rule)?;
        Some(Finding {
            license_id: envelope.license_id.to_owned(),
            kind: AnomalyKind::UnusualActivationPattern,
            evidence: AnomalyEvidence {
                event_ids: vec![envelope.event_id.to_owned()],
                count: surge.count,
                threshold: surge.threshold,
                window_started_at: surge.hour_started_at,
                window_ended_at: surge.hour_ended_at,
                addresses: envelope.client_ip.map(str::to_owned).into_iter().collect(),
                machines: Vec::new(),
                trailing_per_hour: Some(surge.trailing_per_hour),
            },
            trigger_event_id: envelope.event_id.to_owned(),
            trigger_sequence: envelope.sequence,
            occurred_at: envelope.occurred_at,
            // Suspends nothing: the license that passed the threshold is
            // only the last of many.
            suspendable: false,
        })
    }

    /// Records a finding on its license; suspends it too when the tenant
    /// asks for that and the finding is recent (a log read from long ago
    /// after an outage records what it finds, and suspends nothing). A
    /// tenant-wide surge suspends nothing: the license that passed the
    /// threshold is only the last of many.
    /// Returns whether the anomaly is recorded on the license (now, or
    /// before under the same id).
    async fn record(
        &self,
        tenant_id: &str,
        finding: Finding,
        settings: &AnomalySettings,
    ) -> Result<bool, ConsumerError> {
        let now = Utc::now();
        let window = match finding.kind {
            AnomalyKind::LicenseHopping => settings.license_hopping.window_secs,
            AnomalyKind::UnusualActivationPattern => settings.unusual_activation_pattern.window_secs,
            AnomalyKind::ExcessiveHeartbeats => {
                settings.excessive_heartbeats.window_secs * settings.excessive_heartbeats.sustained_windows
            }
        };
        let recent = now - finding.occurred_at <= chrono::Duration::seconds(i64::from(window));
        let tenant_wide = finding.evidence.is_tenant_wide();
        // Only a finding that stands on used devices suspends: churn of a
        // free seat alone is recorded and left to the vendor.
        let suspend = (settings.action == Action::Suspend && recent && !tenant_wide && finding.suspendable)
            .then_some(AutoSuspend { cooldown_secs: settings.suspend_cooldown_secs });
        let anomaly_id = finding.anomaly_id();
        let command = LicenseCommand::RecordAnomaly {
            anomaly_id: anomaly_id.clone(),
            kind: finding.kind,
            trigger_sequence: finding.trigger_sequence,
            evidence: finding.evidence,
            suspend,
            at: now,
        };
        let metadata = system_metadata(tenant_id, ANOMALY_DETECTOR, now);
        match self.licenses.execute(&finding.license_id, command, metadata).await {
            Ok(license) => {
                let recorded = license.open_anomalies.iter().any(|open| open.id == anomaly_id)
                    || license
                        .anomaly_marks
                        .iter()
                        .any(|m| m.kind == finding.kind && m.trigger_sequence >= finding.trigger_sequence);
                let suspend = suspend.is_some();
                tracing::info!(license_id = %finding.license_id, kind = %finding.kind, suspend, recorded, "anomaly detected");
                Ok(recorded)
            }
            Err(CommandError::Refused(refusal)) => {
                tracing::warn!(license_id = %finding.license_id, kind = %finding.kind, %refusal, "anomaly not recorded");
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

impl Consumer for AnomalyWorker {
    async fn start(&mut self) -> Result<(), ConsumerError> {
        // A fresh feed hands over again whatever was not acknowledged; a
        // fresh detector reads each license's history again rather than
        // trusting what a failed step left half-observed.
        self.feed = Some(AnyFeed::open(&self.source, ANOMALY_DETECTOR).await?);
        self.detector = Detector::default();
        // The tenants' hourly counts stay: they count each activation once
        // by its id, however often the feed hands it over.
        Ok(())
    }

    async fn stop(&mut self) {
        flush(self.feed.as_mut(), ANOMALY_DETECTOR).await;
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let mut feed = self.feed.take().ok_or("no feed")?;
        let batch = feed.next_batch(BATCH).await?;
        let (mut findings, mut detected, mut resolved) = (Vec::new(), Vec::new(), Vec::new());
        for raw in &batch {
            if raw["aggregateType"].as_str().is_some_and(|kind| kind != "License") {
                // A product's or customer's event: nothing to detect.
                continue;
            }
            let Some(envelope) = parse(raw) else {
                tracing::warn!(event = %raw["eventId"], "an event the detector cannot read; skipped");
                continue;
            };
            let settings = self.settings.get(envelope.tenant_id).await?;
            if self.detector.last_sequence(envelope.license_id).unwrap_or(0) < envelope.sequence - 1 {
                for finding in self.catch_up(envelope.license_id, envelope.sequence, &settings).await? {
                    findings.push((envelope.tenant_id.to_owned(), finding, settings.clone()));
                }
            }
            let observed = Observed {
                event_id: envelope.event_id,
                license_id: envelope.license_id,
                sequence: envelope.sequence,
                occurred_at: envelope.occurred_at,
                client_ip: envelope.client_ip,
                event: &envelope.event,
            };
            for finding in self.detector.observe(observed, &settings, true) {
                findings.push((envelope.tenant_id.to_owned(), finding, settings.clone()));
            }
            if let Some(finding) = self.surge(&envelope, &settings) {
                findings.push((envelope.tenant_id.to_owned(), finding, settings.clone()));
            }
            match &envelope.event {
                LicenseEvent::AnomalyDetected { anomaly_id, kind, evidence, detected_at, .. } => {
                    detected.push(Anomaly {
                        id: anomaly_id.clone(),
                        tenant_id: envelope.tenant_id.to_owned(),
                        license_id: envelope.license_id.to_owned(),
                        kind: kind.to_string(),
                        evidence: serde_json::to_value(evidence)?,
                        detected_at: keyledger_app::webhooks::timestamp(*detected_at),
                        event_id: envelope.event_id.to_owned(),
                        position: envelope.position,
                        resolved_at: None,
                        resolved_by: None,
                        resolution_note: None,
                    })
                }
                LicenseEvent::AnomalyResolved { anomaly_id, note, resolved_at, .. } => resolved.push(Resolution {
                    anomaly_id: anomaly_id.clone(),
                    resolved_at: keyledger_app::webhooks::timestamp(*resolved_at),
                    resolved_by: envelope.actor.map(str::to_owned),
                    note: note.clone(),
                }),
                _ => {}
            }
        }
        for (tenant_id, finding, settings) in findings {
            let tenant_wide = finding.evidence.is_tenant_wide();
            let hour = finding.evidence.window_started_at;
            if !self.record(&tenant_id, finding, &settings).await? && tenant_wide {
                // Its license refused it (an anomaly of the kind is open
                // there): the hour's next activation raises it again.
                self.surges.unflag(&tenant_id, hour);
            }
        }
        self.store.record_detected(&detected).await?;
        // Detections first: a resolution read in the same batch finds its row.
        self.store.record_resolved(&resolved).await?;
        if !batch.is_empty() {
            feed.ack().await?;
        }
        self.feed = Some(feed);
        self.steps += 1;
        if self.steps >= FORGET_EVERY {
            self.steps = 0;
            self.detector.forget_idle(FORGET_AFTER);
            if let Some(newest) = self.detector.newest() {
                self.surges.forget_before(newest - chrono::Duration::hours(i64::from(MAX_TRAILING_HOURS)));
            }
        }
        Ok(if batch.len() == BATCH { Step::Busy } else { Step::Idle })
    }
}

/// How long NATS waits for the detector to acknowledge a message before
/// handing it over again.
pub const DETECTOR_ACK_WAIT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The envelope's `data` read in place gives the event the stored
    /// `{type: data}` payload gives.
    #[test]
    fn an_envelope_is_read_as_its_stored_event() {
        let stored =
            json!({"LicenseDeactivated": {"machine": "ab".repeat(32), "deactivated_at": "2026-12-05T10:00:00Z"}});
        let envelope = json!({
            "type": "LicenseDeactivated", "data": stored["LicenseDeactivated"], "eventId": "e1", "licenseId": "l1",
            "tenantId": "t1", "sequence": 3, "position": 9, "occurredAt": "2026-12-05T10:00:00.000001Z",
            "metadata": {"client_ip": "192.0.2.1"},
        });
        let read = parse(&envelope).expect("an envelope the detector reads");
        assert_eq!(read.event, serde_json::from_value::<LicenseEvent>(stored).unwrap());
        assert_eq!((read.event_id, read.license_id, read.sequence, read.client_ip), ("e1", "l1", 3, Some("192.0.2.1")));
        // A type the data does not fit is not read.
        let mut wrong = envelope.clone();
        wrong["type"] = json!("LicenseGenerated");
        assert!(parse(&wrong).is_none());
    }
}
