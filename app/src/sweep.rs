//! What the periodic sweeps share: one system command on each license a
//! read model found due, one at a time, a refusal skipping only that one.

use chrono::{DateTime, Utc};
use keyledger_domain::LicenseCommand;

use crate::client::error_chain;
use crate::metadata::system_metadata;
use crate::service::LicenseService;

/// Runs `command` (made afresh per license) as `actor` on each of `due`
/// (license id, tenant id); returns on how many it succeeded. A refused
/// or failed one is logged and left for the next sweep: the license may
/// have changed since its row was read (an expiry extended, a device
/// heard from).
pub(crate) async fn run_on_each(
    licenses: &LicenseService,
    due: Vec<(String, String)>,
    actor: &str,
    now: DateTime<Utc>,
    command: impl Fn() -> LicenseCommand,
) -> usize {
    let mut done = 0;
    for (license_id, tenant_id) in due {
        match licenses.execute(&license_id, command(), system_metadata(&tenant_id, actor, now)).await {
            Ok(_) => done += 1,
            Err(error) => {
                tracing::debug!(%license_id, error = %error_chain(&error), actor, "license skipped by the sweep")
            }
        }
    }
    done
}
