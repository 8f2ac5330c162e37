//! The periodic jobs of the log: recording expiries that have passed,
//! freeing the seats of dead devices, and signing audit checkpoints. The
//! expiry sweep and the checkpoints run in one process per database; every
//! process sweeps dead devices.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_app::{culling, expiry, LicenseService};
use keyledger_eventlog::Checkpoints;
use keyledger_projections::LicenseViews;

use crate::runtime::{Consumer, ConsumerError, Step};

pub const EXPIRY_SWEEPER: &str = "expiry-sweeper";
pub const CHECKPOINTER: &str = "audit-checkpointer";
pub const HEARTBEAT_SWEEPER: &str = "heartbeat-sweeper";

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

/// Records `DeviceCulled` for devices whose heartbeats stopped.
pub struct HeartbeatSweeper {
    licenses: Arc<LicenseService>,
    views: LicenseViews,
}

impl HeartbeatSweeper {
    pub fn new(licenses: Arc<LicenseService>, views: LicenseViews) -> Self {
        Self { licenses, views }
    }
}

impl Consumer for HeartbeatSweeper {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let swept = culling::sweep(&self.licenses, &self.views).await?;
        if swept > 0 {
            tracing::info!(licenses = swept, "heartbeat sweep freed the seats of dead devices");
        }
        Ok(if swept >= culling::BATCH as usize { Step::Busy } else { Step::Idle })
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
