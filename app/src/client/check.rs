//! The check behind validate and heartbeat in every dialect: whether a
//! machine holds a seat of a license that may be used now.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyledger_domain::{
    check_for_update, parse_features, AnomalyKind, License, LicenseCommand, LicenseError, MachineHash, Product,
    Resurrection,
};

use super::{Beat, Call, ClientError, ClientService, Machine, PRODUCT_MAX_AGE};
use crate::anomalies::Allowance;

/// What a validating caller asks beyond "is this machine licensed".
#[derive(Debug, Default, Clone, Copy)]
pub struct Wants<'a> {
    /// The product the caller expects the license to be for.
    pub product_id: Option<&'a str>,
    /// Feature codes the caller requires.
    pub features: Option<&'a [String]>,
    /// The calling application's version, for the update check.
    pub app_version: Option<&'a str>,
}

/// A machine that holds a seat of a license that may be used.
pub struct Checked {
    /// The license, with this call's heartbeat when it was recorded.
    pub license: Arc<License>,
    pub update: Option<UpdateAnswer>,
}

/// What a caller reporting `appVersion` is told about updates.
#[derive(Debug, Clone)]
pub struct UpdateAnswer {
    pub update_available: Option<bool>,
    pub latest_version: Option<String>,
    pub mandatory: Option<bool>,
}

impl ClientService {
    /// Whether the machine holds a seat of `license` that may be used now:
    /// the license rules, a `revive` policy for a dead device, the caller's
    /// product and features; then the call is counted for anomaly
    /// detection and the device's heartbeat recorded when its interval has
    /// passed since its last. A refusal by the rules is `Ok(Err(reason))`;
    /// bad input or a failure is `Err`.
    #[tracing::instrument(skip_all, fields(license_id = %license.id))]
    pub async fn check(
        &self,
        call: &Call<'_>,
        license: &Arc<License>,
        machine: &Machine,
        wants: Wants<'_>,
        beat: Beat,
    ) -> Result<Result<Checked, LicenseError>, ClientError> {
        let now = Utc::now();
        self.stores.usage.count(license.tenant_id.as_str(), crate::usage::Usage::Validation, now);
        let mut license = match self.confirmed_valid(license, &machine.hash, now).await? {
            Ok(license) => license,
            Err(LicenseError::HeartbeatDead) if license.policy.resurrection == Resurrection::Revive => {
                match self.revive(call, license, &machine.hash, now).await? {
                    Ok(license) => Arc::new(license),
                    Err(reason) => return Ok(Err(reason)),
                }
            }
            Err(reason) => return Ok(Err(reason)),
        };
        let product = self.product_if_needed(wants, &license).await?;
        if let Err(reason) = check_entitlements(wants, &license, product.as_deref())? {
            return Ok(Err(reason));
        }
        let update = update_check(wants, product.as_deref(), now);
        self.count_call(call, &license, &machine.hash, now).await;
        let interval = match beat {
            Beat::Validate => self.settings.heartbeat_interval,
            Beat::Heartbeat => self.settings.heartbeat_floor,
        };
        // Often enough under a heartbeat policy that a live device is never
        // taken for dead (see `Policy::dead_after`).
        let interval = license.policy.record_every(interval);
        // A device's first heartbeat is always recorded, however soon after
        // its activation: it is what starts its heartbeat (Keygen's
        // `heartbeatStatus` turns from NOT_STARTED to ALIVE on it).
        let first = |device: &keyledger_domain::Device| {
            beat == Beat::Heartbeat && device.last_heartbeat_at <= device.activated_at
        };
        let device = license.device(&machine.hash);
        let starts = device.is_some_and(first);
        let interval = if starts { chrono::Duration::zero() } else { interval };
        let heartbeat_due = device.is_some_and(|device| now >= device.last_heartbeat_at + interval);
        if heartbeat_due {
            let command =
                LicenseCommand::RecordHeartbeat { machine: machine.hash.clone(), min_interval: interval, at: now };
            // The answer does not depend on it: a failure is logged and the
            // validation stands.
            match self.execute(call, &license, command).await {
                Ok(seen) => license = Arc::new(seen),
                Err(error) => {
                    tracing::warn!(license_id = %license.id, error = %error_chain(&error), "heartbeat not recorded")
                }
            }
        }
        Ok(Ok(Checked { license, update }))
    }

    /// Whether `machine` holds a seat of the license now. A refusal from
    /// memory is confirmed on the log before a paying customer hears it,
    /// in case this process has not seen a write made elsewhere; the read
    /// model is mended then too.
    pub async fn confirmed_valid(
        &self,
        license: &Arc<License>,
        machine: &MachineHash,
        now: DateTime<Utc>,
    ) -> Result<Result<Arc<License>, LicenseError>, ClientError> {
        if license.validate(machine, now).is_ok() {
            return Ok(Ok(license.clone()));
        }
        let licenses = &self.stores.licenses;
        let (current, version, last_hash) = licenses.load(&license.id).await?;
        if let Err(reason) = current.validate(machine, now) {
            return Ok(Err(reason));
        }
        tracing::debug!(license_id = %license.id, "validation view was behind the log");
        licenses.mend_view(&current, version, &last_hash).await?;
        Ok(Ok(Arc::new(current)))
    }

    /// A dead device's call under a `revive` policy: it is alive again,
    /// taking a seat again if the sweep freed its seat (refused when none
    /// is free: the refusal is the answer).
    async fn revive(
        &self,
        call: &Call<'_>,
        license: &License,
        machine: &MachineHash,
        now: DateTime<Utc>,
    ) -> Result<Result<License, LicenseError>, ClientError> {
        let details = super::device_details(call.origin, None);
        let command = LicenseCommand::ReviveDevice { machine: machine.clone(), details, at: now };
        match self.execute(call, license, command).await {
            Ok(license) => Ok(Ok(license)),
            Err(ClientError::Refused(reason)) => Ok(Err(reason)),
            Err(error) => Err(error),
        }
    }

    /// The license's product, read (from a cache) only when the answer
    /// needs it: the caller asks for a feature the license does not carry
    /// itself, or reports an `appVersion`.
    async fn product_if_needed(
        &self,
        wants: Wants<'_>,
        license: &License,
    ) -> Result<Option<Arc<Product>>, ClientError> {
        let Some(product_id) = &license.product_id else { return Ok(None) };
        let needs_features = wants.features.is_some_and(|wanted| wanted.iter().any(|f| !license.features.contains(f)));
        if !needs_features && wants.app_version.is_none() {
            return Ok(None);
        }
        self.stores
            .products
            .get_cached(product_id, PRODUCT_MAX_AGE)
            .await
            .map_err(|e| ClientError::Failed { context: "product unreadable", source: e.into() })
    }

    /// Counts a validate or heartbeat call of a device that holds a seat,
    /// for the excessive-heartbeats detector (see `crate::anomalies::calls`).
    /// The call that passes the tenant's allowance in a window is queued
    /// for the call reporter, a supervised consumer that records it in the
    /// log: the answer never waits for it.
    async fn count_call(&self, call: &Call<'_>, license: &License, machine: &MachineHash, now: DateTime<Utc>) {
        let settings = match self.stores.anomaly_settings.get(&license.tenant_id).await {
            Ok(settings) => settings,
            Err(error) => {
                tracing::warn!(tenant_id = %license.tenant_id, error = %error_chain(&error), "anomaly settings unreadable; call not counted");
                return;
            }
        };
        let rule = &settings.excessive_heartbeats;
        if !rule.enabled {
            return;
        }
        let allowance = Allowance {
            allowance: rule.max_calls_per_window,
            window_secs: rule.window_secs,
            sustained: rule.sustained_windows,
        };
        let Some(over) = self.stores.call_counter.count(&license.id, machine, allowance, now) else {
            return;
        };
        if license.open_anomalies.iter().any(|open| open.kind == AnomalyKind::ExcessiveHeartbeats) {
            // The episode is already recorded; the run counts on, and is
            // reported again at its next multiple once the anomaly is resolved.
            return;
        }
        let command = LicenseCommand::ReportCallRate {
            machine: machine.clone(),
            calls: over.calls,
            allowance: rule.max_calls_per_window,
            window_started_at: over.window_started_at,
            window_secs: rule.window_secs,
            windows: over.windows,
            at: now,
        };
        let metadata = crate::metadata::event_metadata(
            call.origin,
            call.caller.map(|caller| crate::metadata::Actor { key_id: &caller.key_id, role: caller.role.as_str() }),
            &license.tenant_id,
            now,
        );
        self.stores.call_reports.push(super::CallReport { license_id: license.id.to_string(), command, metadata });
    }
}

/// The caller's `productId` and required `features` against the license
/// and its product's features.
fn check_entitlements(
    wants: Wants<'_>,
    license: &License,
    product: Option<&Product>,
) -> Result<Result<(), LicenseError>, ClientError> {
    let product_id = match wants.product_id {
        Some(raw) => Some(
            keyledger_domain::ProductId::parse(raw)
                .map_err(|_| ClientError::invalid("productId", "productId must be a UUID (the id of a product)"))?,
        ),
        None => None,
    };
    let required = match wants.features {
        Some(raw) => parse_features(raw)
            .map_err(|(index, e)| ClientError::invalid(&format!("features[{index}]"), format!("a feature {e}")))?,
        None => Vec::new(),
    };
    let product_features = product.map(|product| product.features.as_slice()).unwrap_or_default();
    Ok(license.check_entitlements(product_id.as_deref(), &required, product_features))
}

/// What a caller reporting `appVersion` is told about updates: from its
/// license's product's stable releases out by `now` (a license of the
/// default product has none). An `appVersion` that is not a semantic
/// version can't be compared: `updateAvailable` and `mandatoryUpdate` are
/// null then, and the validation stands.
fn update_check(wants: Wants<'_>, product: Option<&Product>, now: DateTime<Utc>) -> Option<UpdateAnswer> {
    let raw = wants.app_version?;
    let releases = product.map(|product| product.releases.as_slice()).unwrap_or_default();
    Some(match semver::Version::parse(raw.trim()) {
        Ok(version) => {
            let check = check_for_update(releases, &version, now);
            UpdateAnswer {
                update_available: Some(check.update_available),
                latest_version: check.latest_version,
                mandatory: Some(check.mandatory),
            }
        }
        Err(_) => {
            let latest = check_for_update(releases, &semver::Version::new(0, 0, 0), now).latest_version;
            UpdateAnswer { update_available: None, latest_version: latest, mandatory: None }
        }
    })
}

/// An error and its causes, for a log line: `a: b: c`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
