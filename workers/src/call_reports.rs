//! Records the call-rate reports the client calls queue (see
//! `keyledger_app::client::CallReports`): a validate or heartbeat that
//! passes its tenant's allowance answers at once, and this consumer writes
//! the `ReportCallRate` command after it, under the runtime's supervision,
//! and finishes what is queued on shutdown.

use std::sync::Arc;

use keyledger_app::client::{error_chain, CallReports};
use keyledger_app::LicenseService;

use crate::runtime::{Consumer, ConsumerError, Step};

/// Its name in `/health` and `/metrics`.
pub const CALL_REPORTER: &str = "call-reports";

pub struct CallReporter {
    reports: CallReports,
    licenses: Arc<LicenseService>,
}

impl CallReporter {
    pub fn new(reports: CallReports, licenses: Arc<LicenseService>) -> Self {
        Self { reports, licenses }
    }

    async fn record_all(&mut self) -> usize {
        let reports = self.reports.take();
        let count = reports.len();
        for report in reports {
            if let Err(error) = self.licenses.execute(&report.license_id, report.command, report.metadata).await {
                // A refusal (the license changed meanwhile) or a failure: the
                // run is counted on and reported again at its next multiple.
                tracing::warn!(
                    license_id = %report.license_id,
                    error = %error_chain(&error),
                    "a call rate over the allowance was not reported"
                );
            }
        }
        count
    }
}

impl Consumer for CallReporter {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        Ok(if self.record_all().await > 0 { Step::Busy } else { Step::Idle })
    }

    async fn stop(&mut self) {
        self.record_all().await;
    }
}
