//! Reading the whole log chain by chain: in its primary key's order,
//! `(aggregate_type, aggregate_id, sequence)`, so each aggregate's events
//! arrive together and in sequence, and a reader that folds one chain at
//! a time holds one chain in memory whatever the log's size. `audit
//! verify` and `projections rebuild` read it so, in several key ranges at
//! once (chains are independent), which keeps every core busy.

use std::future::Future;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::Row;

use crate::{Database, EventLog, EventLogError, AGGREGATE_TYPE};

/// A stretch of the key space: the chains from `('License', from)` up to
/// `('License', to)`, an absent bound being the log's start or end.
/// Other aggregates' chains, which are few, fall into the first or the
/// last range as their type's name sorts before or after `License`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
}

impl KeyRange {
    /// The whole key space cut into `parts` ranges, in key order. License
    /// ids are UUIDs, so cuts at evenly spaced leading hex digits give
    /// ranges of about one size.
    pub fn split(parts: usize) -> Vec<KeyRange> {
        let parts = parts.clamp(1, 16);
        let cuts: Vec<String> = (1..parts).map(|n| format!("{:x}", n * 16 / parts)).collect();
        (0..parts)
            .map(|n| KeyRange { from: n.checked_sub(1).map(|before| cuts[before].clone()), to: cuts.get(n).cloned() })
            .collect()
    }

    /// As many ranges as read well at once here: two a core, so one
    /// range's wait on the database overlaps another's work, and no more
    /// than `connections`, the pool's connections the reads may hold
    /// together (each range holds one while it streams).
    pub fn for_this_machine(connections: u32) -> Vec<KeyRange> {
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2);
        Self::split(cores.min(connections as usize).max(1))
    }

    /// Which of the four key-order statements reads this range (open,
    /// from only, to only, both), and its bounds in the order they bind.
    pub(crate) fn shape_and_bounds(&self) -> (usize, Vec<&str>) {
        let shape = match (&self.from, &self.to) {
            (None, None) => 0,
            (Some(_), None) => 1,
            (None, Some(_)) => 2,
            (Some(_), Some(_)) => 3,
        };
        (shape, [self.from.as_deref(), self.to.as_deref()].into_iter().flatten().collect())
    }
}

/// Runs `work` on every range at once, each range a task of its own so
/// their CPU work (hashing, folding) spreads over the cores, and gives
/// the results in the ranges' order. The first error ends the others.
pub async fn each_range<T, E, F, Fut>(ranges: Vec<KeyRange>, work: F) -> Result<Vec<T>, E>
where
    F: Fn(KeyRange) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<EventLogError> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut results: Vec<Option<T>> = ranges.iter().map(|_| None).collect();
    for (n, range) in ranges.into_iter().enumerate() {
        let running = work(range);
        tasks.spawn(async move { (n, running.await) });
    }
    // Dropping the set on an early return aborts the ranges still running.
    while let Some(joined) = tasks.join_next().await {
        let (n, result) = joined.map_err(|error| E::from(EventLogError::Stopped(error)))?;
        results[n] = Some(result?);
    }
    Ok(results.into_iter().flatten().collect())
}

/// An event as stored, its payload and metadata as JSON text.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: i64,
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

impl StoredEvent {
    pub fn is_license(&self) -> bool {
        self.aggregate_type == AGGREGATE_TYPE
    }

    /// Where the event is in the log, for error messages (as
    /// [`LoggedEvent::describe`](crate::LoggedEvent::describe) says it).
    pub fn describe(&self) -> String {
        let kind = self.aggregate_type.to_lowercase();
        format!("event {} of {kind} {} (position {})", self.sequence, self.aggregate_id, self.position)
    }

    /// Whether `other` is of the same aggregate.
    pub fn same_chain(&self, other: &StoredEvent) -> bool {
        self.aggregate_id == other.aggregate_id && self.aggregate_type == other.aggregate_type
    }
}

macro_rules! in_key_order {
    ($columns:literal, $filter:literal) => {
        concat!("SELECT ", $columns, " FROM events ", $filter, " ORDER BY aggregate_type, aggregate_id, sequence")
    };
}

macro_rules! four_ranges {
    ($columns:literal) => {
        [
            in_key_order!($columns, ""),
            in_key_order!($columns, "WHERE (aggregate_type, aggregate_id) >= ($1, $2)"),
            in_key_order!($columns, "WHERE (aggregate_type, aggregate_id) < ($1, $2)"),
            in_key_order!(
                $columns,
                "WHERE (aggregate_type, aggregate_id) >= ($1, $2) AND (aggregate_type, aggregate_id) < ($1, $3)"
            ),
        ]
    };
}

/// The statements by range shape: open, from only, to only, both.
const POSTGRES: [&str; 4] = four_ranges!(
    "position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload, metadata::text AS metadata, hash"
);
pub(crate) const SQLITE: [&str; 4] = four_ranges!(
    "position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash"
);

impl EventLog {
    /// Every event in `range`, chain by chain, each chain in sequence
    /// order; streamed from one query, so memory stays flat. A SQLite
    /// log with a file is read from the file on a thread of its own (see
    /// `sqlite_file`).
    pub fn in_key_order<'a>(&'a self, range: &'a KeyRange) -> BoxStream<'a, Result<StoredEvent, EventLogError>> {
        let (shape, bounds) = range.shape_and_bounds();
        let sql = match self.database() {
            Database::Postgres(_) => POSTGRES[shape],
            Database::Sqlite(pool) => {
                let sql = SQLITE[shape];
                if let Some(file) = crate::sqlite_file::database_file(pool) {
                    let bounds = bounds.into_iter().map(str::to_owned).collect();
                    return crate::sqlite_file::stream(file, sql, bounds);
                }
                sql
            }
        };
        crate::on_pool!(self.database(), pool => {
            let mut query = sqlx::query(sql);
            if shape != 0 {
                query = query.bind(AGGREGATE_TYPE);
            }
            for bound in bounds {
                query = query.bind(bound);
            }
            query.fetch(pool).map_err(EventLogError::from).and_then(|row| async move { stored(&row) }).boxed()
        })
    }
}

pub(crate) fn stored<'r, R>(row: &'r R) -> Result<StoredEvent, EventLogError>
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredEvent {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        hash: row.try_get("hash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::KeyRange;

    fn bounds(ranges: &[KeyRange]) -> Vec<(Option<&str>, Option<&str>)> {
        ranges.iter().map(|range| (range.from.as_deref(), range.to.as_deref())).collect()
    }

    #[test]
    fn the_ranges_cover_the_key_space_in_order() {
        assert_eq!(bounds(&KeyRange::split(1)), [(None, None)]);
        assert_eq!(bounds(&KeyRange::split(2)), [(None, Some("8")), (Some("8"), None)]);
        assert_eq!(
            bounds(&KeyRange::split(4)),
            [(None, Some("4")), (Some("4"), Some("8")), (Some("8"), Some("c")), (Some("c"), None)]
        );
    }
}
