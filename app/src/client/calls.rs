//! Call-rate reports on their way to the log. A validate or heartbeat that
//! passes its tenant's allowance queues a `ReportCallRate` command here; a
//! supervised consumer (the `call-reports` consumer of the workers'
//! runtime) records them, so the answer never waits for the write and no
//! task runs outside the runtime's supervision and graceful shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use keyledger_domain::LicenseCommand;
use tokio::sync::watch;

/// One report: the command and the metadata of the call that passed the
/// allowance.
pub struct CallReport {
    pub license_id: String,
    pub command: LicenseCommand,
    pub metadata: HashMap<String, String>,
}

/// At most this many reports wait; past it new ones are dropped (counted
/// again at the device's next multiple of its allowance).
const MAX_QUEUED: usize = 10_000;

/// The queue between the client calls and the consumer that records them.
#[derive(Clone)]
pub struct CallReports {
    queue: Arc<Mutex<VecDeque<CallReport>>>,
    wake: Arc<watch::Sender<u64>>,
}

impl Default for CallReports {
    fn default() -> Self {
        Self { queue: Arc::default(), wake: Arc::new(watch::channel(0).0) }
    }
}

impl CallReports {
    pub fn push(&self, report: CallReport) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= MAX_QUEUED {
                tracing::warn!(license_id = %report.license_id, "call-rate report queue full; report dropped");
                return;
            }
            queue.push_back(report);
        }
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Every report waiting, oldest first.
    pub fn take(&self) -> Vec<CallReport> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect()
    }

    /// Changes whenever a report is queued: the consumer's wake-up.
    pub fn signal(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }
}
