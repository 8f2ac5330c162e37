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

use crate::metadata::system_metadata;
use crate::service::LicenseService;

/// Licenses swept per step at most; the rest wait for the next.
pub const BATCH: i64 = 1_000;

/// One sweep; returns how many licenses had devices culled.
pub async fn sweep(
    licenses: &LicenseService,
    views: &LicenseViews,
) -> Result<usize, keyledger_projections::ProjectionError> {
    let now = Utc::now();
    let mut swept = 0;
    for (license_id, tenant_id) in views.due_for_culling(now, BATCH).await? {
        let command = LicenseCommand::CullDeadDevices { at: now };
        match licenses.execute(&license_id, command, system_metadata(&tenant_id, "heartbeat-sweep", now)).await {
            Ok(_) => swept += 1,
            Err(error) => tracing::warn!(%license_id, %error, "dead devices not culled; the next sweep tries again"),
        }
    }
    Ok(swept)
}
