//! The expiry sweeper: records `LicenseExpired` for licenses that have
//! passed their expiry.
//!
//! Expiry is enforced on every read whether or not this has run; the
//! sweeper makes the expiry a fact in the log, where audits and event
//! consumers see it. Several processes may sweep at once: `ExpireLicense`
//! adds nothing to a license already expired, and optimistic concurrency
//! lets only one of two racing sweeps append.

use chrono::Utc;
use keyledger_domain::LicenseCommand;
use keyledger_projections::LicenseViews;

use crate::metadata::system_metadata;
use crate::service::LicenseService;

/// Licenses expired per sweep at most; the rest wait for the next tick.
pub const BATCH: i64 = 1_000;

/// One sweep; returns how many licenses it recorded as expired.
pub async fn sweep(
    licenses: &LicenseService,
    views: &LicenseViews,
) -> Result<usize, keyledger_projections::ProjectionError> {
    let now = Utc::now();
    let mut expired = 0;
    for (license_id, tenant_id) in views.due_for_expiry(now, BATCH).await? {
        let command = LicenseCommand::ExpireLicense { at: now };
        match licenses.execute(&license_id, command, system_metadata(&tenant_id, "expiry-sweep", now)).await {
            Ok(_) => expired += 1,
            // An admin may have extended it since the row was read.
            Err(error) => tracing::debug!(%license_id, %error, "license not expired by sweep"),
        }
    }
    Ok(expired)
}
