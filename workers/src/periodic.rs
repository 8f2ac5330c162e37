//! The periodic jobs of the log: recording expiries that have passed, and
//! signing audit checkpoints. Each runs in one process per database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_app::{expiry, LicenseService};
use keyledger_eventlog::Checkpoints;
use keyledger_projections::LicenseViews;

use crate::runtime::{Consumer, ConsumerError, Step};

pub const EXPIRY_SWEEPER: &str = "expiry-sweeper";
pub const CHECKPOINTER: &str = "audit-checkpointer";

/// Records `LicenseExpired` for licenses past their expiry.
pub struct ExpirySweeper {
    licenses: Arc<LicenseService>,
    views: LicenseViews,
}

impl ExpirySweeper {
    pub fn new(licenses: Arc<LicenseService>, views: LicenseViews) -> Self {
        Self { licenses, views }
    }
}

impl Consumer for ExpirySweeper {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let expired = expiry::sweep(&self.licenses, &self.views).await?;
        if expired > 0 {
            tracing::info!(expired, "expiry sweep recorded expired licenses");
        }
        Ok(if expired >= expiry::BATCH as usize { Step::Busy } else { Step::Idle })
    }
}

/// Signs an audit checkpoint every interval.
pub struct Checkpointer {
    checkpoints: Checkpoints,
    interval: Duration,
    next: Instant,
}

impl Checkpointer {
    /// Signs the first checkpoint at `first`, then every `interval`.
    pub fn new(checkpoints: Checkpoints, interval: Duration, first: Instant) -> Self {
        Self { checkpoints, interval, next: first }
    }
}

impl Consumer for Checkpointer {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        if Instant::now() < self.next {
            return Ok(Step::Idle);
        }
        if let Some(checkpoint) = self.checkpoints.create(chrono::Utc::now()).await? {
            tracing::info!(position = checkpoint.body.cursor.position, "audit checkpoint signed");
        }
        self.next = Instant::now() + self.interval;
        Ok(Step::Idle)
    }
}
