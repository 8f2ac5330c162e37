//! Reading the log in key order straight from the SQLite file.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every
//! row to the reader across a channel: a wake-up of each side per row,
//! which at ten million events costs more than the reading itself. A
//! whole-log read (`audit verify`, `projections rebuild`) instead opens
//! the file read-only on a blocking thread of its own, steps the query
//! there and sends the rows on in chunks, so the two sides meet once per
//! chunk. It reads the same committed rows a pool connection would: in
//! WAL mode a reader sees the last commit before its query began.

use std::path::{Path, PathBuf};

use futures::stream::BoxStream;
use futures::StreamExt;
use rusqlite::{OpenFlags, Row};
use tokio::sync::mpsc;

use crate::key_order::StoredEvent;
use crate::{EventLogError, AGGREGATE_TYPE};

/// Rows sent to the reader at a time.
const CHUNK: usize = 512;
/// Chunks read ahead of the reader.
const AHEAD: usize = 4;

/// The file a pool's SQLite database lives in, or None for one that has
/// no file of its own (in memory), which only the pool's connections see.
pub(crate) fn database_file(pool: &sqlx::SqlitePool) -> Option<PathBuf> {
    let options = pool.connect_options();
    let file = options.get_filename();
    let named = !file.as_os_str().is_empty() && file != Path::new(":memory:");
    (named && file.is_file()).then(|| file.to_path_buf())
}

/// The rows of `sql` (one of the key-order statements, with `bounds` for
/// its `$2` and `$3` after the aggregate type for its `$1`) as a stream,
/// read on a blocking thread from `file`.
pub(crate) fn stream(
    file: PathBuf,
    sql: &'static str,
    bounds: Vec<String>,
) -> BoxStream<'static, Result<StoredEvent, EventLogError>> {
    let (sender, receiver) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = read(&file, sql, &bounds, &sender) {
            // The reader may have gone; then nobody is left to tell.
            let _ = sender.blocking_send(Err(error));
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((chunk, receiver))
    })
    .flat_map(|chunk| {
        let items: Vec<Result<StoredEvent, EventLogError>> = match chunk {
            Ok(events) => events.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        futures::stream::iter(items)
    })
    .boxed()
}

type Chunks = mpsc::Sender<Result<Vec<StoredEvent>, EventLogError>>;

/// Steps the query and sends its rows in chunks; stops early, without an
/// error, once the reader has dropped the stream.
fn read(file: &Path, sql: &str, bounds: &[String], sender: &Chunks) -> Result<(), EventLogError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(file, flags).map_err(opening(file))?;
    let mut statement = connection.prepare(sql).map_err(reading(file))?;
    let mut parameters: Vec<&str> = Vec::with_capacity(3);
    if !bounds.is_empty() {
        parameters.push(AGGREGATE_TYPE);
        parameters.extend(bounds.iter().map(String::as_str));
    }
    let mut rows = statement.query(rusqlite::params_from_iter(parameters)).map_err(reading(file))?;
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(row) = rows.next().map_err(reading(file))? {
        chunk.push(stored(row).map_err(reading(file))?);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if sender.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = sender.blocking_send(Ok(chunk));
    }
    Ok(())
}

/// A row of the key-order statements, whose columns come in this order.
fn stored(row: &Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        position: row.get(0)?,
        event_id: row.get(1)?,
        aggregate_type: row.get(2)?,
        aggregate_id: row.get(3)?,
        sequence: row.get(4)?,
        event_type: row.get(5)?,
        event_version: row.get(6)?,
        payload: row.get(7)?,
        metadata: row.get(8)?,
        hash: row.get(9)?,
    })
}

fn opening(file: &Path) -> impl Fn(rusqlite::Error) -> EventLogError + '_ {
    move |source| EventLogError::SqliteFile { what: format!("cannot open {} to read", file.display()), source }
}

fn reading(file: &Path) -> impl Fn(rusqlite::Error) -> EventLogError + '_ {
    move |source| EventLogError::SqliteFile { what: format!("reading the events of {} failed", file.display()), source }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, TryStreamExt};

    use crate::key_order::{stored, StoredEvent, SQLITE};
    use crate::{Database, EventLog, KeyRange, AGGREGATE_TYPE};

    /// What the pool's own connection gives for a range's statement.
    async fn through_the_pool(pool: &sqlx::SqlitePool, sql: &str, bounds: &[String]) -> Vec<StoredEvent> {
        let mut query = sqlx::query(sql);
        if !bounds.is_empty() {
            query = query.bind(AGGREGATE_TYPE);
        }
        for bound in bounds {
            query = query.bind(bound.as_str());
        }
        query.fetch(pool).map(|row| stored(&row.unwrap())).try_collect().await.unwrap()
    }

    fn keys(events: &[StoredEvent]) -> Vec<(String, String, i64, String, String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e.aggregate_type.clone(),
                    e.aggregate_id.clone(),
                    e.sequence,
                    e.payload.clone(),
                    e.metadata.clone(),
                    e.hash.clone(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_file_gives_each_range_the_rows_the_pool_gives() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let db = Database::connect(&url, 4).await.unwrap();
        db.migrate().await.unwrap();
        let Database::Sqlite(pool) = &db else { unreachable!() };
        // Licenses across the key space, three events each, and a chain
        // of another aggregate type that sorts before them.
        let mut position = 0;
        let ids = (0..40u32).map(|n| format!("{:x}{n:07}-0000-4000-8000-000000000000", n % 16));
        let chains = ids.map(|id| (AGGREGATE_TYPE, id)).chain([("Product", "p-1".to_owned())]);
        for (kind, id) in chains {
            for sequence in 1..=3 {
                position += 1;
                sqlx::query(
                    "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, sequence, event_type, \
                     event_version, payload, metadata, hash) VALUES ($1, $2, $3, $4, $5, 'T', '1', $6, '{}', $7)",
                )
                .bind(position)
                .bind(format!("e{position}"))
                .bind(kind)
                .bind(&id)
                .bind(sequence)
                .bind(format!("{{\"n\":{position}}}"))
                .bind(format!("h{position}"))
                .execute(pool)
                .await
                .unwrap();
            }
        }
        let file = super::database_file(pool).expect("a database in a file");
        let log = EventLog::new(db.clone());
        let mut all = Vec::new();
        for range in KeyRange::split(4) {
            let (shape, bounds) = range.shape_and_bounds();
            let bounds: Vec<String> = bounds.into_iter().map(str::to_owned).collect();
            let sql = SQLITE[shape];
            let direct: Vec<StoredEvent> =
                super::stream(file.clone(), sql, bounds.clone()).try_collect().await.unwrap();
            assert!(!direct.is_empty(), "range {range:?} read nothing");
            assert_eq!(keys(&direct), keys(&through_the_pool(pool, sql, &bounds).await), "range {range:?}");
            let logged: Vec<StoredEvent> = log.in_key_order(&range).try_collect().await.unwrap();
            assert_eq!(keys(&logged), keys(&direct));
            all.extend(direct);
        }
        assert_eq!(all.len(), 41 * 3, "the ranges cover every event once");
    }
}
