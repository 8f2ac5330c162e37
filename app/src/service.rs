//! Executing license commands: load, decide, append, project — retried
//! when another writer got to the same license first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use keyledger_domain::{License, LicenseCommand, LicenseError, LicenseEvent};
use keyledger_eventlog::{AppendError, EventLog, EventLogError, Guard, Loaded, NewEvent, Snapshots, AGGREGATE_TYPE};
use keyledger_projections::{LicenseViews, MemoryView};
use rand::Rng;
use serde_json::Value;

use crate::client::error_chain;
use crate::metrics::Metrics;

/// Attempts before a command gives up with 503. Each lost race means
/// another command on the same license committed, so this bounds how long
/// one request can be starved, not how many writers may race.
const MAX_ATTEMPTS: u32 = 12;
/// Retries of a read-model update after its events were committed.
const PROJECTION_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(#[from] LicenseError),
    #[error("gave up after {MAX_ATTEMPTS} attempts lost to concurrent writers")]
    Contended,
    /// What the command was decided on besides the license (its product)
    /// changed before the command could be written; nothing was written.
    #[error("the record the command was decided on changed before it was written")]
    GuardMoved,
    #[error("event store: loading the license's snapshot and events failed")]
    Load(#[source] EventLogError),
    #[error("event store: appending the license's events failed")]
    Append(#[source] sqlx::Error),
    #[error("event store: {what} do not serialize")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Projection(#[from] keyledger_projections::ProjectionError),
}

pub struct LicenseService {
    log: EventLog,
    snapshots: Snapshots,
    views: LicenseViews,
    memory: Arc<MemoryView>,
    metrics: Arc<Metrics>,
}

impl LicenseService {
    pub fn new(
        log: EventLog,
        snapshots: Snapshots,
        views: LicenseViews,
        memory: Arc<MemoryView>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { log, snapshots, views, memory, metrics }
    }

    /// Runs `command` (see [`LicenseService::decide_and_append`]) and counts
    /// its outcome.
    pub async fn execute(
        &self,
        license_id: &str,
        command: LicenseCommand,
        metadata: HashMap<String, String>,
    ) -> Result<License, CommandError> {
        self.execute_guarded(license_id, command, metadata, None).await
    }

    /// As [`LicenseService::execute`], written only while `guard`'s
    /// aggregate is at the version the command was decided on (a license
    /// generated for a product): [`CommandError::GuardMoved`] otherwise.
    pub async fn execute_guarded(
        &self,
        license_id: &str,
        command: LicenseCommand,
        metadata: HashMap<String, String>,
        guard: Option<Guard>,
    ) -> Result<License, CommandError> {
        let name = command.name();
        let outcome = self.decide_and_append(license_id, command, metadata, guard.as_ref()).await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(CommandError::Refused(_)) => "refused",
            Err(CommandError::Contended | CommandError::GuardMoved) => "contended",
            Err(_) => "failed",
        };
        self.metrics.command(name, label);
        outcome
    }

    /// Runs `command` against the license and returns the license as the
    /// command left it. The read model row is written in the same
    /// transaction as the events, so a caller's next read sees its write.
    ///
    /// The command is first decided on this process's in-memory state of
    /// the license, when it holds one with its last event's hash: the
    /// append only succeeds if that is still the log's latest, so a stale
    /// entry costs a retry, never a wrong event. A refusal, or a command
    /// that finds nothing to do, decided from memory is confirmed against
    /// the log before it is returned.
    async fn decide_and_append(
        &self,
        license_id: &str,
        command: LicenseCommand,
        metadata: HashMap<String, String>,
        guard: Option<&Guard>,
    ) -> Result<License, CommandError> {
        let metadata = serde_json::to_value(&metadata)
            .map_err(|source| CommandError::Serialize { what: "the command's metadata", source })?;
        let mut from_memory = true;
        let mut lost_races = 0;
        loop {
            let remembered = if from_memory { self.remembered(license_id) } else { None };
            let current = match remembered {
                Some(current) => current,
                None => {
                    from_memory = false;
                    self.snapshots.load(license_id).await.map_err(CommandError::Load)?
                }
            };
            let mut license = current.license;
            let sink = EventSink::default();
            if let Err(refusal) = license.handle(command.clone(), &(), &sink).await {
                if from_memory {
                    from_memory = false;
                    continue;
                }
                return Err(refusal.into());
            }
            // The sink has applied the new events: `license` is the license
            // after the command.
            let events = sink.collect().await;
            if events.is_empty() && from_memory {
                // "Nothing to do" is as much a verdict as a refusal: if the
                // memory is behind a write made elsewhere, the command may
                // have something to do after all. Confirm it on the log.
                from_memory = false;
                continue;
            }
            if events.is_empty() {
                if license.exists() {
                    // Nothing to append; a row left behind by a failure
                    // before rows were written with their events is healed
                    // by the client's retry. `apply` never moves a row back.
                    self.project(&license, current.version, &current.last_hash).await?;
                    self.memory.put(license.clone(), current.version, Some(&current.last_hash));
                }
                return Ok(license);
            }
            let version = current.version + events.len() as i64;
            let serialized = serialize(&events, current.version)?;
            let new_events: Vec<NewEvent<'_>> = serialized
                .iter()
                .map(|(sequence, event_type, event_version, payload)| NewEvent {
                    aggregate_type: AGGREGATE_TYPE,
                    aggregate_id: license_id,
                    sequence: *sequence,
                    event_type,
                    event_version,
                    payload,
                    metadata: &metadata,
                })
                .collect();
            let row = LicenseViews::projected_row(&license, version)?;
            let appended = match guard {
                Some(guard) => self.log.append_guarded(&new_events, &current.last_hash, Some(&row), guard).await,
                None => self.log.append_after(&new_events, &current.last_hash, Some(&row)).await,
            };
            match appended {
                Ok(hashes) => {
                    for event in &events {
                        self.metrics.event(&event.event_type());
                    }
                    self.memory.put(license.clone(), version, hashes.last().map(String::as_str));
                    if let Err(error) = self.snapshots.maybe_save(&license, current.version, version).await {
                        // Only loading gets slower without it.
                        tracing::warn!(license_id, error = %error_chain(&error), "snapshot not saved");
                    }
                    return Ok(license);
                }
                Err(AppendError::Conflict) if from_memory => from_memory = false,
                Err(AppendError::Conflict) => {
                    lost_races += 1;
                    if lost_races >= MAX_ATTEMPTS {
                        return Err(CommandError::Contended);
                    }
                    backoff(lost_races).await;
                }
                Err(AppendError::GuardMoved) => return Err(CommandError::GuardMoved),
                Err(AppendError::Database(error)) => return Err(CommandError::Append(error)),
            }
        }
    }

    /// The license as this process last saw it, if it knows the hash to
    /// chain the next event to.
    fn remembered(&self, license_id: &str) -> Option<Loaded> {
        let Some(entry) = self.memory.get(license_id) else {
            // Unknown here: decided as a license with no events. Only
            // generate succeeds on that, and its append fails if the
            // license exists after all; a refusal is confirmed by loading.
            return Some(Loaded::default());
        };
        let last_hash = entry.last_hash_hex()?;
        Some(Loaded { license: (*entry.license).clone(), version: entry.version, last_hash })
    }
}

/// Each event's sequence, type, version and payload, numbered after
/// `version`.
fn serialize(events: &[LicenseEvent], version: i64) -> Result<Vec<(i64, String, String, Value)>, CommandError> {
    events
        .iter()
        .zip(version + 1..)
        .map(|(event, sequence)| {
            let payload = serde_json::to_value(event)
                .map_err(|source| CommandError::Serialize { what: "the license's new events", source })?;
            Ok((sequence, event.event_type(), event.event_version(), payload))
        })
        .collect()
}

impl LicenseService {
    /// The license as its events say it is now, and its version, bypassing
    /// the read model: for confirming a refusal before it reaches a paying
    /// customer. The in-memory view learns what was loaded.
    /// Returns the license, its version and its last event's chain hash.
    pub async fn load(&self, license_id: &str) -> Result<(License, i64, String), CommandError> {
        let loaded = self.snapshots.load(license_id).await.map_err(CommandError::Load)?;
        if loaded.license.exists() {
            self.memory.put(loaded.license.clone(), loaded.version, Some(&loaded.last_hash));
        }
        Ok((loaded.license, loaded.version, loaded.last_hash))
    }

    /// The license's newest state known here, with the sequence and chain
    /// hash of its last event: from memory when it has the hash, else from
    /// the log. License tokens name this point of the license's history.
    pub async fn head(&self, license_id: &str) -> Result<(Arc<License>, i64, String), CommandError> {
        if let Some(entry) = self.memory.get(license_id) {
            if let Some(hash) = entry.last_hash_hex() {
                return Ok((entry.license, entry.version, hash));
            }
        }
        let loaded = self.snapshots.load(license_id).await.map_err(CommandError::Load)?;
        if loaded.license.exists() {
            self.memory.put(loaded.license.clone(), loaded.version, Some(&loaded.last_hash));
        }
        Ok((Arc::new(loaded.license), loaded.version, loaded.last_hash))
    }

    /// Rewrites the read-model row from a license just loaded from the log,
    /// when a reader found the row behind it.
    pub async fn mend_view(&self, license: &License, version: i64, last_hash: &str) -> Result<(), CommandError> {
        Ok(self.views.rewrite(license, version, Some(last_hash)).await?)
    }

    /// Records the license in the read model, retrying a transient failure
    /// (a busy SQLite, an exhausted pool) so the write that was just
    /// committed is readable when the client hears of it.
    async fn project(&self, license: &License, version: i64, last_hash: &str) -> Result<(), CommandError> {
        let mut attempt = 0;
        loop {
            match self.views.apply(license, version, Some(last_hash)).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < PROJECTION_ATTEMPTS => {
                    let error = error_chain(&error);
                    tracing::warn!(license_id = %license.id, %error, "read model update failed; retrying");
                    attempt += 1;
                    backoff(attempt + 2).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Loads each license from its events and records it in the read
    /// model at its last sequence.
    async fn reproject(&self, license_ids: &[String]) -> Result<usize, CommandError> {
        let mut reprojected = 0;
        for license_id in license_ids {
            // One license that can't be projected must not keep every other
            // license stale, nor the server from starting.
            match self.reproject_one(license_id).await {
                Ok(()) => reprojected += 1,
                Err(error) => {
                    tracing::error!(%license_id, error = %error_chain(&error), "cannot re-project license; skipped")
                }
            }
        }
        Ok(reprojected)
    }

    async fn reproject_one(&self, license_id: &str) -> Result<(), CommandError> {
        let (license, version, last_hash) = self.load(license_id).await?;
        if license.exists() {
            self.mend_view(&license, version, &last_hash).await?;
        }
        Ok(())
    }

    /// Re-projects licenses whose read model fell behind their log, as a
    /// crash between append and projection leaves them. Run at start-up.
    pub async fn catch_up_views(&self) -> Result<usize, CommandError> {
        let stale = self.views.stale_license_ids().await?;
        self.reproject(&stale).await
    }
}

/// Jittered exponential backoff, capped at ~64 ms, so racing writers spread
/// out instead of colliding again in lock step.
async fn backoff(attempt: u32) {
    let ceiling_ms = 1u64 << attempt.min(6);
    let wait = rand::thread_rng().gen_range(0..=ceiling_ms * 1000);
    tokio::time::sleep(Duration::from_micros(wait)).await;
}

#[cfg(test)]
mod tests {
    //! Two services on one database, each with its own memory and no
    //! follower: two processes, one of which has not heard of the other's
    //! writes yet.

    use super::*;
    use chrono::{Duration, Utc};
    use keyledger_domain::{LicenseKey, LicenseType, MachineId, MachineName, Seats};
    use keyledger_eventlog::Database;

    async fn process(db: &Database) -> LicenseService {
        let views = LicenseViews::new(db.clone());
        LicenseService::new(
            EventLog::new(db.clone()),
            Snapshots::new(db.clone()),
            views,
            Arc::default(),
            Arc::default(),
        )
    }

    fn activate(machine: &MachineId) -> LicenseCommand {
        let name = MachineName::parse(Some("m")).unwrap();
        LicenseCommand::ActivateLicense {
            machine: machine.hash(b"secret"),
            machine_name: name,
            details: Default::default(),
            device_number: None,
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_command_that_memory_says_is_done_already_is_checked_against_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&format!("sqlite://{}/t.db", dir.path().display()), 4).await.unwrap();
        db.migrate().await.unwrap();
        let (a, b) = (process(&db).await, process(&db).await);
        let id = uuid::Uuid::new_v4().to_string();
        let generate = LicenseCommand::GenerateLicense {
            license_id: keyledger_domain::LicenseId::trusted(id.clone()),
            tenant_id: keyledger_domain::TenantId::trusted("t"),
            owner_id: keyledger_domain::OwnerId::trusted("o"),
            license_key: LicenseKey::parse("ABCD-EFGH-JKMN-2345").unwrap(),
            license_type: LicenseType::Standard,
            max_activations: Seats::new(1).unwrap(),
            max_connections: None,
            expires_at: Some(Utc::now() + Duration::days(30)),
            expires_after_activation_secs: None,
            product_id: None,
            customer_id: None,
            features: Vec::new(),
            number: None,
            policy: Default::default(),
            at: Utc::now(),
        };
        let machine = MachineId::parse("m1").unwrap();
        a.execute(&id, generate, HashMap::new()).await.unwrap();
        // B learns the license bound to m1; then A releases it.
        b.execute(&id, activate(&machine), HashMap::new()).await.unwrap();
        let deactivate = LicenseCommand::DeactivateLicense {
            machine: machine.hash(b"secret"),
            enforce_transfer_limit: true,
            at: Utc::now(),
        };
        a.execute(&id, deactivate, HashMap::new()).await.unwrap();

        // B's memory still has m1 bound, so activating it looks like
        // nothing to do; the log says otherwise, and the event is written.
        let license = b.execute(&id, activate(&machine), HashMap::new()).await.unwrap();
        assert_eq!(license.devices.len(), 1);
        let (logged, version, _) = a.load(&id).await.unwrap();
        assert_eq!(version, 4, "generate, activate, deactivate, activate");
        assert_eq!(logged.devices.len(), 1);
    }
}
