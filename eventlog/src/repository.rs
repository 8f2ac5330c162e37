//! The cqrs-es event repository of whichever backend is configured.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use crate::log::{AppendError, EventLog, NewEvent, AGGREGATE_TYPE};
use crate::Database;

/// The event repository cqrs-es loads and appends through: reads go to
/// postgres-es or sqlite-es, appends to [`EventLog`], which adds the global
/// position, the event id and the hash chain their INSERTs know nothing of.
pub struct LogRepository {
    reader: Reader,
    log: EventLog,
}

enum Reader {
    Postgres(PostgresEventRepository),
    Sqlite(SqliteEventRepository),
}

impl LogRepository {
    pub fn new(database: &Database) -> Self {
        let reader = match database {
            Database::Postgres(pool) => Reader::Postgres(PostgresEventRepository::new(pool.clone())),
            Database::Sqlite(pool) => Reader::Sqlite(SqliteEventRepository::new(pool.clone())),
        };
        Self { reader, log: EventLog::new(database.clone()) }
    }
}

macro_rules! delegate {
    ($self:ident, $repo:ident => $call:expr) => {
        match &$self.reader {
            Reader::Postgres($repo) => $call,
            Reader::Sqlite($repo) => $call,
        }
    };
}

fn persistence_error(error: AppendError) -> PersistenceError {
    match error {
        AppendError::Conflict | AppendError::GuardMoved => PersistenceError::OptimisticLockError,
        AppendError::Database(error @ (sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)) => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        AppendError::Database(other) => PersistenceError::UnknownError(Box::new(other)),
    }
}

impl PersistedEventRepository for LogRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, repo => repo.get_events::<A>(aggregate_id).await)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, repo => repo.get_last_events::<A>(aggregate_id, last_sequence).await)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        delegate!(self, repo => repo.get_snapshot::<A>(aggregate_id).await)
    }

    /// The store runs in event-store mode, so there is never a snapshot.
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let events: Vec<NewEvent<'_>> = events
            .iter()
            .map(|event| NewEvent {
                aggregate_type: AGGREGATE_TYPE,
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence as i64,
                event_type: &event.event_type,
                event_version: &event.event_version,
                payload: &event.payload,
                metadata: &event.metadata,
            })
            .collect();
        self.log.append(&events).await.map(drop).map_err(persistence_error)
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, repo => repo.stream_events::<A>(aggregate_id).await)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, repo => repo.stream_all_events::<A>().await)
    }
}
