//! Keeps this process's in-memory validation view equal to the log: loads
//! it at start, then applies every event committed anywhere, following the
//! tail. Every process runs its own; no lease.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use keyledger_eventlog::{Cursor, Database, EventLog, PayloadOnly, Snapshots};
use keyledger_projections::{LicenseViews, MemoryView};

use crate::projector::decode;
use crate::runtime::{Consumer, ConsumerError, Step};
use crate::ProjectorError;

const PAGE: i64 = 5_000;
const BATCH: i64 = 1_000;
/// The name it runs under; every process runs its own.
pub const MEMORY_FOLLOWER: &str = "validation_view_follower";
/// How long an idle follower waits before looking again when no commit
/// woke it: with the tail's reuse of a quiet read (20 ms, see
/// `keyledger_eventlog`'s tail window), the most another process's write
/// can take to reach this process's validations if a notice of it is lost.
pub const FOLLOWER_POLL: Duration = Duration::from_millis(20);

pub struct MemoryFollower {
    log: EventLog,
    snapshots: Snapshots,
    memory: Arc<MemoryView>,
    progress: Arc<std::sync::Mutex<Cursor>>,
}

impl MemoryFollower {
    pub fn new(db: Database, memory: Arc<MemoryView>) -> Self {
        Self { log: EventLog::new(db.clone()), snapshots: Snapshots::new(db), memory, progress: Arc::default() }
    }

    /// Where the follower has got to in the tail, for reporting its lag.
    pub fn progress(&self) -> Arc<std::sync::Mutex<Cursor>> {
        self.progress.clone()
    }

    /// Sets the follower to take up the tail at the log's end as it is
    /// now: every event after this is applied to the view by following,
    /// every license before it by [`load_views`], which may run at the same
    /// time (the view never moves a license back to an older version).
    pub async fn follow_from_end(&self) -> Result<(), ProjectorError> {
        let from = self.log.end_cursor().await?.unwrap_or(Cursor::START);
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = from;
        Ok(())
    }

    /// A follower that goes on from where `progress` says another one got
    /// to: how the runtime builds it again after a panic.
    pub fn resume(db: Database, memory: Arc<MemoryView>, progress: Arc<std::sync::Mutex<Cursor>>) -> Self {
        Self { progress, ..Self::new(db, memory) }
    }

    /// Reads the tail through `log`, sharing the newest stretch of it with
    /// the log's other readers (see [`EventLog::tail`]) instead of reading
    /// every event from the database once more.
    pub fn with_log(self, log: EventLog) -> Self {
        Self { log, ..self }
    }

    fn cursor(&self) -> Cursor {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the next batch; returns where it ended and whether it was
    /// a full one (more may be waiting).
    async fn apply_next(&self, from: Cursor) -> Result<Option<(Cursor, bool)>, ProjectorError> {
        let events = self.log.tail_payloads(from, BATCH).await?;
        for event in events.iter().filter(|event| event.is_license()) {
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
                let loaded = self
                    .snapshots
                    .load(&event.license_id)
                    .await
                    .map_err(|source| ProjectorError::Load { license_id: event.license_id.clone(), source })?;
                self.memory.put(loaded.license, loaded.version, Some(&loaded.last_hash));
            }
        }
        Ok(())
    }
}

/// Puts every license of the read model into the view, page by page, in
/// the order of their ids.
pub async fn load_views(views: &LicenseViews, memory: &MemoryView) -> Result<(), ProjectorError> {
    let mut after = String::new();
    loop {
        let page = views.page(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.license.id.to_string();
        for view in page {
            memory.put(view.license, view.version, view.last_hash.as_deref());
        }
    }
    Ok(())
}

/// Run by every process on the consumer runtime, woken by commits.
impl Consumer for MemoryFollower {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        match self.apply_next(self.cursor()).await? {
            Some((next, full)) => {
                *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = next;
                Ok(if full { Step::Busy } else { Step::Idle })
            }
            None => Ok(Step::Idle),
        }
    }
}
