//! Writes the usage the client calls count (see `keyledger_app::usage`)
//! to `usage_hourly`: what was counted since the last write, added in one
//! transaction every few seconds and on shutdown. A failed write keeps
//! its counts for the next one.

use std::sync::Arc;

use keyledger_app::usage::{UsageCounts, UsageStore};

use crate::runtime::{Consumer, ConsumerError, Step};

/// Its name in `/health` and `/metrics`.
pub const USAGE_WRITER: &str = "usage";

pub struct UsageWriter {
    counts: Arc<UsageCounts>,
    store: UsageStore,
}

impl UsageWriter {
    pub fn new(counts: Arc<UsageCounts>, store: UsageStore) -> Self {
        Self { counts, store }
    }

    async fn write(&mut self) -> Result<(), ConsumerError> {
        let counts = self.counts.take();
        if counts.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.store.add(&counts).await {
            self.counts.restore(counts);
            return Err(Box::new(error));
        }
        Ok(())
    }
}

impl Consumer for UsageWriter {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        self.write().await?;
        Ok(Step::Idle)
    }

    async fn stop(&mut self) {
        if let Err(error) = self.write().await {
            tracing::warn!(error = %error, "usage counts not written at shutdown");
        }
    }
}
