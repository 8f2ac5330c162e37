//! The heartbeat sweep: frees the seats of devices whose heartbeats
//! stopped, under licenses with a heartbeat policy (Keygen's culling).
//!
//! A dead device is refused on every call whether or not this has run;
//! the sweep makes the death a fact in the log (`DeviceCulled`, actor
//! `system`) and gives the seat back. Every process sweeps: a
//! `CullDeadDevices` finds nothing to record for a device already culled,
//! and optimistic concurrency lets only one of two racing sweeps append.

use chrono::Utc;
use keyledger_domain::LicenseCommand;
use keyledger_projections::LicenseViews;

use crate::service::LicenseService;
use crate::sweep::run_on_each;

/// Licenses swept per step at most; the rest wait for the next.
pub const BATCH: i64 = 1_000;

/// One sweep; returns how many licenses had devices culled.
pub async fn sweep(
    licenses: &LicenseService,
    views: &LicenseViews,
) -> Result<usize, keyledger_projections::ProjectionError> {
    let now = Utc::now();
    let due = views.due_for_culling(now, BATCH).await?;
    Ok(run_on_each(licenses, due, "heartbeat-sweep", now, || LicenseCommand::CullDeadDevices { at: now }).await)
}
