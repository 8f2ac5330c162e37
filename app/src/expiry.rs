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

use crate::service::LicenseService;
use crate::sweep::run_on_each;

/// Licenses expired per sweep at most; the rest wait for the next tick.
pub const BATCH: i64 = 1_000;

/// One sweep; returns how many licenses it recorded as expired.
pub async fn sweep(
    licenses: &LicenseService,
    views: &LicenseViews,
) -> Result<usize, keyledger_projections::ProjectionError> {
    let now = Utc::now();
    let due = views.due_for_expiry(now, BATCH).await?;
    Ok(run_on_each(licenses, due, "expiry-sweep", now, || LicenseCommand::ExpireLicense { at: now }).await)
}
