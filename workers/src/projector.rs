//! The projection runner: keeps `license_view` equal to the log by
//! following the tail.
//!
//! Commands update the view right after they append, so a client reads its
//! own writes at once. This runner is what makes the view converge
//! whatever happens to that fast path: a process that dies between append
//! and update, an update that failed, a write made by another process. It
//! applies each event to the row it follows and saves its checkpoint in
//! the same transaction; rows only ever move forward in version, so the
//! two writers never undo each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use cqrs_es::Aggregate;
use keyledger_domain::{License, LicenseEvent};
use keyledger_eventlog::{each_range, Database, EventLog, KeyRange, PayloadOnly, Snapshots};
use keyledger_projections::{LicenseViews, Versioned};

use crate::runtime::{Consumer, ConsumerError, Step};

/// The runner's checkpoint and lease name.
pub const LICENSE_VIEW_RUNNER: &str = "projection:license_view";
const BATCH: i64 = 500;
/// Licenses a rebuild folds before writing their rows (one transaction).
const REBUILD_WRITE_EVERY: usize = 2_000;
/// How long an idle runner waits for the tail when no commit woke it.
pub const RUNNER_POLL: Duration = Duration::from_millis(50);

/// A license as the runner will write it: its state, version and the
/// chain hash of that version's event, when known.
type Projected = (License, i64, Option<String>);

#[derive(Clone)]
pub struct ProjectionRunner {
    db: Database,
    log: EventLog,
    views: LicenseViews,
    snapshots: Snapshots,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Log(#[from] keyledger_eventlog::EventLogError),
    #[error(transparent)]
    View(#[from] keyledger_projections::ProjectionError),
    #[error("{event} does not decode")]
    Undecodable { event: String, source: serde_json::Error },
    #[error("cannot load license {license_id} from the event log")]
    Load {
        license_id: String,
        #[source]
        source: keyledger_eventlog::EventLogError,
    },
    /// A gap in a license's chain, found while replaying the tail.
    #[error("the events of license {license_id} jump from {from} to {to}; run `keyledger audit verify`")]
    Gap { license_id: String, from: i64, to: i64 },
    /// A rebuild streams on one connection while it writes on another.
    #[error("a rebuild needs a pool of at least two database connections (KEYLEDGER_DB_MAX_CONNECTIONS)")]
    PoolTooSmall,
}

impl ProjectionRunner {
    pub fn new(db: Database) -> Self {
        Self {
            log: EventLog::new(db.clone()),
            views: LicenseViews::new(db.clone()),
            snapshots: Snapshots::new(db.clone()),
            db,
        }
    }

    /// Reads the tail through `log`, sharing the newest stretch of it with
    /// the log's other readers (see [`EventLog::tail`]) instead of reading
    /// every event from the database once more.
    pub fn with_log(self, log: EventLog) -> Self {
        Self { log, ..self }
    }

    /// Projects the next batch after the checkpoint; returns its size.
    /// Commands write their rows with their events, so usually every row
    /// is current already: one query for the batch's row versions finds
    /// that out, and only rows behind their events are loaded and written.
    pub async fn step(&self) -> Result<usize, ProjectorError> {
        let cursor = self.log.checkpoint(LICENSE_VIEW_RUNNER).await?;
        let events = self.log.tail_payloads(cursor, BATCH).await?;
        let Some(last) = events.last() else { return Ok(0) };
        let mut newest: HashMap<&str, i64> = HashMap::new();
        // Other aggregates' events (products) are not this model's.
        let licensed: Vec<&PayloadOnly> = events.iter().filter(|event| event.is_license()).collect();
        for event in &licensed {
            let sequence = newest.entry(event.license_id.as_str()).or_default();
            *sequence = (*sequence).max(event.sequence);
        }
        let ids: Vec<&str> = newest.keys().copied().collect();
        let stored = self.views.versions(&ids).await?;
        let behind = |license_id: &str| stored.get(license_id).is_none_or(|version| *version < newest[license_id]);
        let mut touched: HashMap<String, Projected> = HashMap::new();
        for event in licensed.iter().filter(|event| behind(&event.license_id)) {
            self.project(&mut touched, event).await?;
        }
        let rows: Vec<Versioned<'_>> =
            touched.values().map(|(license, version, hash)| (license, *version, hash.as_deref())).collect();
        self.views.apply_batch(&rows, LICENSE_VIEW_RUNNER, last.cursor).await?;
        Ok(events.len())
    }

    /// Rebuilds `license_view` by replaying every license's events from
    /// the first, then points the runner at what a tail could read when
    /// the rebuild began. Rows are rewritten in place (a running server
    /// keeps answering) and never moved back past a newer version written
    /// meanwhile. Returns how many licenses it rebuilt.
    pub async fn rebuild(&self) -> Result<usize, ProjectorError> {
        self.rebuild_counting(Arc::default()).await
    }

    /// As [`ProjectionRunner::rebuild`], adding each event replayed to
    /// `replayed` as it goes, for a progress bar.
    ///
    /// The log is read chain by chain in key ranges at once
    /// ([`EventLog::in_key_order`]), each license folded as its events
    /// stream past and written with others in batches, so memory stays
    /// flat. Each read sees every event committed before it began, even
    /// one a transaction open elsewhere keeps from the tail: nothing
    /// waits for the tail. The runner goes on from the tail's end as it
    /// was before the reads, so what they saw past it (or did not see) it
    /// looks at again, finding the rows current where the rebuild wrote
    /// them.
    pub async fn rebuild_counting(&self, replayed: Arc<AtomicU64>) -> Result<usize, ProjectorError> {
        let resume_at = self.log.end_cursor().await?.unwrap_or(keyledger_eventlog::Cursor::START);
        // Half the pool: each range holds a connection while it streams
        // and takes another to write its rows.
        let ranges = KeyRange::for_this_machine(self.db.max_connections() / 2);
        if self.db.max_connections() < 2 {
            return Err(ProjectorError::PoolTooSmall);
        }
        let rebuilt = each_range(ranges, |range| {
            let (runner, replayed) = (self.clone(), replayed.clone());
            async move { runner.rebuild_range(&range, &replayed).await }
        })
        .await?;
        self.views.remove_orphans().await?;
        self.log.save_checkpoint(LICENSE_VIEW_RUNNER, resume_at).await?;
        Ok(rebuilt.into_iter().sum())
    }

    /// Replays the licenses of one key range; returns how many.
    async fn rebuild_range(&self, range: &KeyRange, replayed: &AtomicU64) -> Result<usize, ProjectorError> {
        let mut events = self.log.in_key_order(range);
        let mut folded: Vec<(License, i64, String)> = Vec::with_capacity(REBUILD_WRITE_EVERY);
        let mut current: Option<(License, i64, String)> = None;
        let mut current_id = String::new();
        let mut licenses = 0;
        let mut unreported = 0;
        while let Some(event) = events.try_next().await? {
            unreported += 1;
            if unreported == 1_000 {
                replayed.fetch_add(unreported, Ordering::Relaxed);
                unreported = 0;
            }
            // Other aggregates' events (products) are not this model's.
            if !event.is_license() {
                continue;
            }
            if current.is_none() || current_id != event.aggregate_id {
                if let Some(done) = current.take() {
                    folded.push(done);
                    licenses += 1;
                    if folded.len() == REBUILD_WRITE_EVERY {
                        self.write_folded(&mut folded).await?;
                    }
                }
                current_id.clone_from(&event.aggregate_id);
            }
            let (license, version, hash) = current.get_or_insert_with(Default::default);
            if event.sequence != *version + 1 {
                return Err(ProjectorError::Gap { license_id: event.aggregate_id, from: *version, to: event.sequence });
            }
            let decoded: LicenseEvent = serde_json::from_str(&event.payload)
                .map_err(|source| ProjectorError::Undecodable { event: event.describe(), source })?;
            license.apply(decoded);
            *version = event.sequence;
            *hash = event.hash;
        }
        replayed.fetch_add(unreported, Ordering::Relaxed);
        if let Some(done) = current.take() {
            folded.push(done);
            licenses += 1;
        }
        self.write_folded(&mut folded).await?;
        Ok(licenses)
    }

    /// Writes the folded licenses' rows and empties the batch.
    async fn write_folded(&self, folded: &mut Vec<(License, i64, String)>) -> Result<(), ProjectorError> {
        let rows: Vec<Versioned<'_>> =
            folded.iter().map(|(license, version, hash)| (license, *version, Some(hash.as_str()))).collect();
        self.views.rewrite_all(&rows).await?;
        folded.clear();
        Ok(())
    }

    async fn project(
        &self,
        touched: &mut HashMap<String, Projected>,
        event: &PayloadOnly,
    ) -> Result<(), ProjectorError> {
        if !touched.contains_key(&event.license_id) {
            let current = match self.views.by_id(&event.license_id).await {
                Ok(Some(view)) => (view.license, view.version, view.last_hash),
                Ok(None) => (License::default(), 0, None),
                // A row behind its events that no longer decodes is rebuilt
                // from the log below. (A current row that doesn't decode is
                // not looked at here: validate's refusal check, start-up
                // and `projections rebuild` mend it.)
                Err(keyledger_projections::ProjectionError::Corrupt { .. }) => (License::default(), -1, None),
                Err(other) => return Err(other.into()),
            };
            touched.insert(event.license_id.clone(), current);
        }
        let (license, version, hash) = touched.get_mut(&event.license_id).expect("inserted above");
        if *version >= event.sequence {
            return Ok(()); // The row already has it, from the command that wrote it.
        }
        if *version + 1 == event.sequence {
            license.apply(decode(event)?);
            *version = event.sequence;
            *hash = Some(event.hash.clone());
            return Ok(());
        }
        // The row is further behind than this batch can bridge (it was
        // lost or damaged): take the license whole from the log.
        let loaded = self
            .snapshots
            .load(&event.license_id)
            .await
            .map_err(|source| ProjectorError::Load { license_id: event.license_id.clone(), source })?;
        *license = loaded.license;
        *version = loaded.version;
        *hash = Some(loaded.last_hash);
        Ok(())
    }
}

/// Run exclusively (one runner per database) on the consumer runtime.
impl Consumer for ProjectionRunner {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        // Commands write their own rows, so there is rarely work here: a
        // part batch means the tail is drained.
        let projected = ProjectionRunner::step(self).await?;
        Ok(if projected < BATCH as usize { Step::Idle } else { Step::Busy })
    }
}

/// An event's payload as the event it is.
pub(crate) fn decode(event: &PayloadOnly) -> Result<LicenseEvent, ProjectorError> {
    serde_json::from_str(&event.payload)
        .map_err(|source| ProjectorError::Undecodable { event: event.describe(), source })
}
