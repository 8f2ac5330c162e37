//! The newest stretch of the tail, read once and shared by every reader of
//! one [`EventLog`](crate::EventLog) and its clones.
//!
//! A serving process follows the tail several times over: the projection
//! runner, the memory follower, the webhook dispatcher, the anomaly
//! detector and the relay each read every event. Without sharing, each
//! event is selected, sent over the wire and decoded once per reader, and
//! under write load those reads are a fifth of the server's work and a
//! share of the database's. With it, the reader that gets to the end of
//! what is known first reads the next rows; the others find them here.
//!
//! Why a window can be served from memory: the tail only hands out events
//! no later commit can land in front of (on PostgreSQL, transactions older
//! than the oldest one still running; on SQLite, one writer at a time). So
//! once a read after cursor `a` returned rows up to cursor `b`, the events
//! between `a` and `b` are those rows, forever. The window keeps that
//! stretch, `start` exclusive to the newest row inclusive. It grows only by
//! reading after its own end, and starts afresh after a reader's cursor
//! when that reader is past its end (or reads first).
//!
//! Idle consumers poll the tail's end every few tens of milliseconds each
//! (about 110 tail reads a second on an idle PostgreSQL server with its
//! default consumers). A read of the end that found nothing is therefore
//! taken as the answer for [`QUIET_REUSE`] by the readers after it, as
//! long as this process has heard of no commit since it began (its own
//! commits, and other processes' through `LISTEN`/`NOTIFY`). A commit it
//! has heard of ends that at once; one it has not (a lost notice, or a
//! transaction elsewhere that held the tail back ending) is found by the
//! first read after [`QUIET_REUSE`], so a consumer's poll interval bounds
//! its latency as before, plus that.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::log::Cursor;

/// One event as the tail reads it, its JSON columns still as text: each
/// reader decodes only what it needs.
#[derive(Debug)]
pub(crate) struct TailRow {
    pub cursor: Cursor,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub hash: String,
    /// The event's envelope, built by the first consumer that asks for it
    /// and shared by the rest (or why it could not be built).
    pub envelope: std::sync::OnceLock<Result<Arc<serde_json::Value>, Arc<crate::EventLogError>>>,
}

/// How many rows the window keeps: a kilobyte or so each for keyledger's
/// events (batches already handed out keep theirs alive a little longer).
/// A reader further behind than this reads the database itself until it
/// catches up.
const CAPACITY: usize = 4_096;

/// How many rows one read at the window's end asks for at least, so that
/// the readers behind the one reading find a batch's worth there.
const FILL: i64 = 1_000;

/// How long a read of the window's end that found nothing answers for the
/// readers after it, while no commit is heard of.
const QUIET_REUSE: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Default)]
pub(crate) struct TailCache {
    /// Held only to look at or change the window, never across a read.
    window: std::sync::Mutex<Window>,
    /// Held by the one reader filling the window from the database: the
    /// others at its end wait for that read instead of making their own,
    /// while readers the window already serves never wait for it.
    filling: tokio::sync::Mutex<()>,
    /// Reads that went to the database, for tests and diagnosis.
    database_reads: AtomicU64,
}

#[derive(Default)]
struct Window {
    /// The cursor the window starts after; `None` before the first read.
    start: Option<Cursor>,
    /// Every event after `start`, in tail order, up to the newest read.
    rows: VecDeque<Arc<TailRow>>,
    /// The last read of the window's end found nothing: the commit
    /// generation its caller knew of, and when it began.
    quiet: Option<(u64, std::time::Instant)>,
}

/// Where a reader's cursor is, seen from the window.
enum Place {
    /// The window holds rows after it: here they are.
    Served(Vec<Arc<TailRow>>),
    /// Before the window's start (which is given).
    Behind(Cursor),
    /// At the window's end, past it, or there is no window yet.
    AtOrPastEnd,
}

impl Window {
    /// The cursor of the newest event the window knows the whole tail up
    /// to.
    fn end(&self) -> Option<Cursor> {
        self.rows.back().map(|row| row.cursor).or(self.start)
    }

    fn place(&self, after: Cursor, limit: usize) -> Place {
        let (Some(start), Some(end)) = (self.start, self.end()) else { return Place::AtOrPastEnd };
        if after < start {
            return Place::Behind(start);
        }
        if after >= end {
            return Place::AtOrPastEnd;
        }
        let first = self.rows.partition_point(|row| row.cursor <= after);
        Place::Served(self.rows.range(first..).take(limit).cloned().collect())
    }

    /// Drops the oldest rows past [`CAPACITY`], moving the start up.
    fn trim(&mut self) {
        while self.rows.len() > CAPACITY {
            if let Some(oldest) = self.rows.pop_front() {
                self.start = Some(oldest.cursor);
            }
        }
    }
}

impl std::fmt::Debug for TailCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailCache").field("database_reads", &self.database_reads()).finish_non_exhaustive()
    }
}

impl TailCache {
    /// Up to `limit` events after `after`, from the window when it holds
    /// them, else through `read(after, n)` from the database:
    ///
    /// - a reader at the window's end reads at least [`FILL`] rows, adds
    ///   them to the window and takes its batch from them; the readers
    ///   arriving there meanwhile wait for that read and take theirs from
    ///   the window;
    /// - a reader behind the window reads `limit` rows alone, stopping at
    ///   the window's start when it reaches it (its next batch comes from
    ///   the window), and leaves the window as it is;
    /// - a reader past the window's end, or the first, starts the window
    ///   afresh after its own cursor.
    ///
    /// A batch from the window may be shorter than `limit` although more
    /// events are committed: it ends where the window does, and the next
    /// read from there fetches what follows.
    ///
    /// `generation` is the count of commits the caller's process has heard
    /// of when it asked (see the module's documentation).
    pub(crate) async fn read<F, Fut, E>(
        &self,
        after: Cursor,
        limit: i64,
        generation: u64,
        read: F,
    ) -> Result<Vec<Arc<TailRow>>, E>
    where
        F: Fn(Cursor, i64) -> Fut,
        Fut: Future<Output = Result<Vec<TailRow>, E>>,
    {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        match self.place(after, wanted) {
            Place::Served(rows) => return Ok(rows),
            Place::Behind(start) => {
                self.database_reads.fetch_add(1, Ordering::Relaxed);
                let mut rows = read(after, limit).await?;
                // Stop at the window's start, unless nothing comes before
                // it; so this reader joins the window instead of passing
                // its end and starting it afresh under the others.
                if rows.first().is_some_and(|row| row.cursor <= start) {
                    rows.retain(|row| row.cursor <= start);
                }
                return Ok(rows.into_iter().map(Arc::new).collect());
            }
            Place::AtOrPastEnd => {}
        }
        let _filling = self.filling.lock().await;
        // Another reader may have filled the window while this one waited.
        if let Place::Served(rows) = self.place(after, wanted) {
            return Ok(rows);
        }
        if self.quiet_at(after, generation) {
            return Ok(Vec::new());
        }
        self.database_reads.fetch_add(1, Ordering::Relaxed);
        let began = std::time::Instant::now();
        let rows = read(after, limit.max(FILL)).await?;
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.end() != Some(after) {
            // Past the window's end, or the first read: it starts here.
            *window = Window { start: Some(after), ..Window::default() };
        }
        window.quiet = rows.is_empty().then_some((generation, began));
        window.rows.extend(rows.into_iter().map(Arc::new));
        // The batch is taken before the window is trimmed: a read of more
        // than CAPACITY rows still answers from its own first row.
        let batch = match window.place(after, wanted) {
            Place::Served(rows) => rows,
            Place::Behind(_) | Place::AtOrPastEnd => Vec::new(),
        };
        window.trim();
        Ok(batch)
    }

    fn place(&self, after: Cursor, limit: usize) -> Place {
        self.window.lock().unwrap_or_else(|p| p.into_inner()).place(after, limit)
    }

    /// Whether `after` is the window's end, read from the database less
    /// than [`QUIET_REUSE`] ago with nothing found, and no commit heard of
    /// since that read began.
    fn quiet_at(&self, after: Cursor, generation: u64) -> bool {
        let window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.end() == Some(after)
            && window.quiet.is_some_and(|(heard, began)| heard == generation && began.elapsed() < QUIET_REUSE)
    }

    /// How many reads went to the database so far.
    pub(crate) fn database_reads(&self) -> u64 {
        self.database_reads.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn cursor(position: i64) -> Cursor {
        Cursor { txid: 0, position }
    }

    fn row(position: i64) -> TailRow {
        TailRow {
            cursor: cursor(position),
            event_id: format!("e{position}"),
            aggregate_type: "License".to_owned(),
            aggregate_id: "l".to_owned(),
            sequence: position,
            event_type: "T".to_owned(),
            event_version: "1".to_owned(),
            payload: "{}".to_owned(),
            metadata: "{}".to_owned(),
            hash: String::new(),
            envelope: Default::default(),
        }
    }

    /// A log of events at positions `1..=committed`.
    async fn from_log(committed: i64, after: Cursor, limit: i64) -> Result<Vec<TailRow>, Infallible> {
        Ok((after.position + 1..=committed).take(limit as usize).map(row).collect())
    }

    fn positions(rows: &[Arc<TailRow>]) -> Vec<i64> {
        rows.iter().map(|row| row.cursor.position).collect()
    }

    #[tokio::test]
    async fn readers_behind_the_end_are_served_from_the_window() {
        let cache = TailCache::default();
        let first = cache.read(cursor(0), 3, 0, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&first), [1, 2, 3]);
        assert_eq!(cache.database_reads(), 1);
        // The read filled the window with everything committed.
        let second = cache.read(cursor(0), 5, 0, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&second), [1, 2, 3, 4, 5]);
        let rest = cache.read(cursor(5), 100, 0, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&rest), [6, 7, 8, 9, 10]);
        assert_eq!(cache.database_reads(), 1);
    }

    #[tokio::test]
    async fn a_reader_at_the_end_reads_what_was_committed_since() {
        let cache = TailCache::default();
        cache.read(cursor(0), 10, 0, |a, l| from_log(4, a, l)).await.unwrap();
        let nothing = cache.read(cursor(4), 10, 0, |a, l| from_log(4, a, l)).await.unwrap();
        assert!(nothing.is_empty());
        let new = cache.read(cursor(4), 10, 1, |a, l| from_log(7, a, l)).await.unwrap();
        assert_eq!(positions(&new), [5, 6, 7]);
        assert_eq!(cache.database_reads(), 3);
        // The window still reaches back to its start.
        let all = cache.read(cursor(0), 10, 1, |a, l| from_log(7, a, l)).await.unwrap();
        assert_eq!(positions(&all), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(cache.database_reads(), 3);
    }

    #[tokio::test]
    async fn an_empty_read_of_the_end_answers_for_a_while_unless_a_commit_is_heard_of() {
        let cache = TailCache::default();
        cache.read(cursor(0), 10, 0, |a, l| from_log(4, a, l)).await.unwrap();
        assert!(cache.read(cursor(4), 10, 0, |a, l| from_log(4, a, l)).await.unwrap().is_empty());
        assert_eq!(cache.database_reads(), 2);
        // Committed without this process hearing of it: not seen yet...
        assert!(cache.read(cursor(4), 10, 0, |a, l| from_log(6, a, l)).await.unwrap().is_empty());
        assert_eq!(cache.database_reads(), 2);
        // ...until a commit is heard of,
        let heard = cache.read(cursor(4), 10, 1, |a, l| from_log(6, a, l)).await.unwrap();
        assert_eq!(positions(&heard), [5, 6]);
        assert_eq!(cache.database_reads(), 3);
        // or, unheard of, once the quiet read is older than QUIET_REUSE.
        assert!(cache.read(cursor(6), 10, 1, |a, l| from_log(6, a, l)).await.unwrap().is_empty());
        assert!(cache.read(cursor(6), 10, 1, |a, l| from_log(8, a, l)).await.unwrap().is_empty());
        tokio::time::sleep(QUIET_REUSE + std::time::Duration::from_millis(5)).await;
        let late = cache.read(cursor(6), 10, 1, |a, l| from_log(8, a, l)).await.unwrap();
        assert_eq!(positions(&late), [7, 8]);
        // A reader past the end is never answered from a quiet read.
        let past = cache.read(cursor(9), 10, 1, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&past), [10]);
    }

    #[tokio::test]
    async fn a_reader_behind_the_window_reads_alone_and_leaves_it() {
        let cache = TailCache::default();
        cache.read(cursor(5), 10, 0, |a, l| from_log(8, a, l)).await.unwrap();
        let behind = cache.read(cursor(2), 2, 0, |a, l| from_log(8, a, l)).await.unwrap();
        assert_eq!(positions(&behind), [3, 4]);
        let window = cache.read(cursor(5), 10, 0, |a, l| from_log(8, a, l)).await.unwrap();
        assert_eq!(positions(&window), [6, 7, 8]);
        assert_eq!(cache.database_reads(), 2);
    }

    #[tokio::test]
    async fn a_reader_ahead_of_the_window_starts_it_again() {
        let cache = TailCache::default();
        cache.read(cursor(0), 10, 0, |a, l| from_log(3, a, l)).await.unwrap();
        let ahead = cache.read(cursor(6), 10, 0, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&ahead), [7, 8, 9]);
        // Positions 4 to 6 were never read into the window: read alone,
        // up to the window's start; the rest comes from the window.
        let gap = cache.read(cursor(3), 10, 0, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&gap), [4, 5, 6]);
        let rest = cache.read(cursor(6), 10, 0, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&rest), [7, 8, 9]);
        assert_eq!(cache.database_reads(), 3);
    }

    #[tokio::test]
    async fn the_window_keeps_the_newest_rows_only() {
        let cache = TailCache::default();
        let committed = CAPACITY as i64 + 500;
        let mut at = cursor(0);
        loop {
            let rows = cache.read(at, 1_000, 0, |a, l| from_log(committed, a, l)).await.unwrap();
            let Some(last) = rows.last() else { break };
            at = last.cursor;
        }
        assert_eq!(at, cursor(committed));
        let reads = cache.database_reads();
        // The oldest rows are gone: a read there goes to the database.
        let old = cache.read(cursor(0), 1, 0, |a, l| from_log(committed, a, l)).await.unwrap();
        assert_eq!(positions(&old), [1]);
        assert_eq!(cache.database_reads(), reads + 1);
        let newest = cache.read(cursor(committed - 1), 1, 0, |a, l| from_log(committed, a, l)).await.unwrap();
        assert_eq!(positions(&newest), [committed]);
        assert_eq!(cache.database_reads(), reads + 1);
    }

    #[tokio::test]
    async fn a_read_larger_than_the_window_answers_in_full() {
        let cache = TailCache::default();
        let committed = CAPACITY as i64 + 2_000;
        let rows = cache.read(cursor(0), committed, 0, |a, l| from_log(committed, a, l)).await.unwrap();
        assert_eq!(rows.len() as i64, committed);
        assert_eq!(rows.last().unwrap().cursor, cursor(committed));
        // The window kept the newest CAPACITY rows.
        let reads = cache.database_reads();
        let kept =
            cache.read(cursor(committed - CAPACITY as i64), 1, 0, |a, l| from_log(committed, a, l)).await.unwrap();
        assert_eq!(positions(&kept), [committed - CAPACITY as i64 + 1]);
        assert_eq!(cache.database_reads(), reads);
    }

    #[tokio::test]
    async fn a_reader_behind_stops_at_the_window_and_then_joins_it() {
        let cache = TailCache::default();
        cache.read(cursor(5), 10, 0, |a, l| from_log(9, a, l)).await.unwrap();
        let behind = cache.read(cursor(1), 100, 0, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&behind), [2, 3, 4, 5]);
        let joined = cache.read(cursor(5), 100, 0, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&joined), [6, 7, 8, 9]);
        assert_eq!(cache.database_reads(), 2);
    }
}
