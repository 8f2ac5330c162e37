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
//! stretch, `start` exclusive to the newest row inclusive, and grows it
//! only by reading after its own end.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;

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
}

/// How many rows the window keeps: about a kilobyte each. A reader
/// further behind than this reads the database itself until it catches
/// up.
const CAPACITY: usize = 4_096;

/// How many rows one read at the window's end asks for at least: enough
/// for the largest batch any reader takes.
const FILL: i64 = 1_000;

#[derive(Default)]
pub(crate) struct TailCache {
    window: Mutex<Window>,
    /// Reads that went to the database, for tests and diagnosis.
    database_reads: AtomicU64,
}

#[derive(Default)]
struct Window {
    /// The cursor the window starts after; `None` before the first read.
    start: Option<Cursor>,
    /// Every event after `start`, in tail order, up to the newest read.
    rows: VecDeque<Arc<TailRow>>,
}

impl Window {
    /// The cursor of the newest event the window knows the whole tail up
    /// to.
    fn end(&self) -> Option<Cursor> {
        self.rows.back().map(|row| row.cursor).or(self.start)
    }

    /// Up to `limit` rows after `after`, when the window holds `after` and
    /// at least one row past it.
    fn after(&self, after: Cursor, limit: usize) -> Option<Vec<Arc<TailRow>>> {
        let (start, end) = (self.start?, self.end()?);
        if after < start || after >= end {
            return None;
        }
        let first = self.rows.partition_point(|row| row.cursor <= after);
        Some(self.rows.range(first..).take(limit).cloned().collect())
    }

    /// Adds rows read after the window's end, dropping the oldest past
    /// [`CAPACITY`].
    fn extend(&mut self, rows: Vec<TailRow>) {
        self.rows.extend(rows.into_iter().map(Arc::new));
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
    /// Up to `limit` events after `after`: from the window when it holds
    /// them, else read by `read(after, limit)` from the database. A reader
    /// at the window's end reads the next rows for everyone (the others
    /// wait for that one read instead of making their own); a reader
    /// behind the window reads alone and leaves it as it is; a reader
    /// ahead of it, or the first, starts it afresh where it is.
    ///
    /// A batch from the window may be shorter than `limit` although more
    /// events are committed: it ends where the window does, and the next
    /// read from there fetches what follows.
    pub(crate) async fn read<F, Fut, E>(&self, after: Cursor, limit: i64, read: F) -> Result<Vec<Arc<TailRow>>, E>
    where
        F: Fn(Cursor, i64) -> Fut,
        Fut: Future<Output = Result<Vec<TailRow>, E>>,
    {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut window = self.window.lock().await;
        if let Some(rows) = window.after(after, wanted) {
            return Ok(rows);
        }
        if window.start.is_some_and(|start| after < start) {
            drop(window);
            self.database_reads.fetch_add(1, Ordering::Relaxed);
            return Ok(read(after, limit).await?.into_iter().map(Arc::new).collect());
        }
        self.database_reads.fetch_add(1, Ordering::Relaxed);
        let rows = read(after, limit.max(FILL)).await?;
        if window.end() != Some(after) {
            // Ahead of the window, or the first read: it starts here.
            *window = Window { start: Some(after), rows: VecDeque::new() };
        }
        window.extend(rows);
        Ok(window.after(after, wanted).unwrap_or_default())
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
        let first = cache.read(cursor(0), 3, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&first), [1, 2, 3]);
        assert_eq!(cache.database_reads(), 1);
        // The read filled the window with everything committed.
        let second = cache.read(cursor(0), 5, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&second), [1, 2, 3, 4, 5]);
        let rest = cache.read(cursor(5), 100, |a, l| from_log(10, a, l)).await.unwrap();
        assert_eq!(positions(&rest), [6, 7, 8, 9, 10]);
        assert_eq!(cache.database_reads(), 1);
    }

    #[tokio::test]
    async fn a_reader_at_the_end_reads_what_was_committed_since() {
        let cache = TailCache::default();
        cache.read(cursor(0), 10, |a, l| from_log(4, a, l)).await.unwrap();
        let nothing = cache.read(cursor(4), 10, |a, l| from_log(4, a, l)).await.unwrap();
        assert!(nothing.is_empty());
        let new = cache.read(cursor(4), 10, |a, l| from_log(7, a, l)).await.unwrap();
        assert_eq!(positions(&new), [5, 6, 7]);
        assert_eq!(cache.database_reads(), 3);
        // The window still reaches back to its start.
        let all = cache.read(cursor(0), 10, |a, l| from_log(7, a, l)).await.unwrap();
        assert_eq!(positions(&all), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(cache.database_reads(), 3);
    }

    #[tokio::test]
    async fn a_reader_behind_the_window_reads_alone_and_leaves_it() {
        let cache = TailCache::default();
        cache.read(cursor(5), 10, |a, l| from_log(8, a, l)).await.unwrap();
        let behind = cache.read(cursor(2), 2, |a, l| from_log(8, a, l)).await.unwrap();
        assert_eq!(positions(&behind), [3, 4]);
        let window = cache.read(cursor(5), 10, |a, l| from_log(8, a, l)).await.unwrap();
        assert_eq!(positions(&window), [6, 7, 8]);
        assert_eq!(cache.database_reads(), 2);
    }

    #[tokio::test]
    async fn a_reader_ahead_of_the_window_starts_it_again() {
        let cache = TailCache::default();
        cache.read(cursor(0), 10, |a, l| from_log(3, a, l)).await.unwrap();
        let ahead = cache.read(cursor(6), 10, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&ahead), [7, 8, 9]);
        // Positions 4 to 6 were never read into the window: not served.
        let gap = cache.read(cursor(3), 10, |a, l| from_log(9, a, l)).await.unwrap();
        assert_eq!(positions(&gap), [4, 5, 6, 7, 8, 9]);
        assert_eq!(cache.database_reads(), 3);
    }

    #[tokio::test]
    async fn the_window_keeps_the_newest_rows_only() {
        let cache = TailCache::default();
        let committed = CAPACITY as i64 + 500;
        let mut at = cursor(0);
        loop {
            let rows = cache.read(at, 1_000, |a, l| from_log(committed, a, l)).await.unwrap();
            let Some(last) = rows.last() else { break };
            at = last.cursor;
        }
        assert_eq!(at, cursor(committed));
        let reads = cache.database_reads();
        // The oldest rows are gone: a read there goes to the database.
        let old = cache.read(cursor(0), 1, |a, l| from_log(committed, a, l)).await.unwrap();
        assert_eq!(positions(&old), [1]);
        assert_eq!(cache.database_reads(), reads + 1);
        let newest = cache.read(cursor(committed - 1), 1, |a, l| from_log(committed, a, l)).await.unwrap();
        assert_eq!(positions(&newest), [committed]);
        assert_eq!(cache.database_reads(), reads + 1);
    }
}
