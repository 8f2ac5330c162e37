//! Keeps this process's in-memory validation view equal to the log: loads
//! it at start, then applies every event committed anywhere, following the
//! tail. Every process runs its own; no lease.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use keyledger_eventlog::{Cursor, Database, EventLog, PayloadOnly, Snapshots};
use keyledger_projections::{LicenseViews, MemoryView};

use crate::projector::decode;
use crate::ProjectorError;

const PAGE: i64 = 5_000;
const BATCH: i64 = 1_000;
/// How long an idle follower waits before looking again: the most another
/// process's write can take to reach this process's validations.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How long it waits after a batch that drained the tail.
const BUSY_WAIT: Duration = Duration::from_millis(10);

pub struct MemoryFollower {
    log: EventLog,
    views: LicenseViews,
    snapshots: Snapshots,
    memory: Arc<MemoryView>,
    progress: Arc<std::sync::Mutex<Cursor>>,
}

impl MemoryFollower {
    pub fn new(db: Database, memory: Arc<MemoryView>) -> Self {
        Self {
            log: EventLog::new(db.clone()),
            views: LicenseViews::new(db.clone()),
            snapshots: Snapshots::new(db),
            memory,
            progress: Arc::default(),
        }
    }

    /// Where the follower has got to in the tail, for reporting its lag.
    pub fn progress(&self) -> Arc<std::sync::Mutex<Cursor>> {
        self.progress.clone()
    }

    /// Loads every license into memory; returns where to follow the tail
    /// from (taken before loading, so nothing falls in between).
    pub async fn warm(&self) -> Result<Cursor, ProjectorError> {
        let from = self.log.end_cursor().await?.unwrap_or(Cursor::START);
        let mut after = String::new();
        loop {
            let page = self.views.page(&after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.license.id.clone();
            for view in page {
                self.memory.put(view.license, view.version, None);
            }
        }
        Ok(from)
    }

    /// Follows the tail from `from` until the task is dropped.
    pub async fn run(self, mut from: Cursor) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = from;
        loop {
            match self.step(from).await {
                Ok(Some((next, full))) => {
                    from = next;
                    *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = from;
                    if !full {
                        // Drained: gather a few milliseconds of events
                        // rather than query once per event under load.
                        tokio::time::sleep(BUSY_WAIT).await;
                    }
                }
                Ok(None) => tokio::time::sleep(IDLE_WAIT).await,
                Err(error) => {
                    tracing::warn!(%error, "validation view follower failed; will retry");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Applies the next batch; returns where it ended and whether it was
    /// a full one (more may be waiting).
    async fn step(&self, from: Cursor) -> Result<Option<(Cursor, bool)>, ProjectorError> {
        let events = self.log.tail_payloads(from, BATCH).await?;
        for event in &events {
            self.apply(event).await?;
        }
        Ok(events.last().map(|e| (e.cursor, events.len() as i64 == BATCH)))
    }

    /// Applies one event; the payload is only decoded when the view lacks
    /// it, which for this process's own writes it never does.
    async fn apply(&self, event: &PayloadOnly) -> Result<(), ProjectorError> {
        match self.memory.get(&event.license_id) {
            Some(held) if held.version > event.sequence => {}
            // Known, perhaps without the hash commands chain to.
            Some(held) if held.version == event.sequence => {
                if held.last_hash.is_none() {
                    self.memory.put((*held.license).clone(), event.sequence, Some(&event.hash));
                }
            }
            Some(held) if held.version + 1 == event.sequence => {
                let mut license = (*held.license).clone();
                license.apply(decode(event)?);
                self.memory.put(license, event.sequence, Some(&event.hash));
            }
            // A license generated elsewhere: its first event is all of it.
            None if event.sequence == 1 => {
                let mut license = keyledger_domain::License::default();
                license.apply(decode(event)?);
                self.memory.put(license, 1, Some(&event.hash));
            }
            // New to this process, or further behind than one event.
            _ => {
                let loaded = self.snapshots.load(&event.license_id).await.map_err(|e| ProjectorError::Load {
                    license_id: event.license_id.clone(),
                    message: e.to_string(),
                })?;
                self.memory.put(loaded.license, loaded.version, Some(&loaded.last_hash));
            }
        }
        Ok(())
    }
}
