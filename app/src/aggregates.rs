//! The catalog's aggregates (products, customers): a command is decided on
//! the aggregate's state in its view table, and its events are appended to
//! the aggregate's own chain in the log together with the view row that
//! reflects them, in one transaction. Licenses have their own, faster path
//! (`service`); these are written seldom and read by id or by tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_domain::EVENT_VERSION;
use keyledger_eventlog::{
    on_pool, AppendError, Database, EventLog, EventLogError, LoggedEvent, NewEvent, ProjectedRow, SqlValue,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// How often a command is decided again after another writer changed the
/// aggregate first.
const ATTEMPTS: u32 = 5;

/// An aggregate kept in a view table of its own: one row per aggregate
/// with `state` (its JSON), `version` (its last event's sequence),
/// `last_hash` (that event's chain hash) and the columns it is found by.
pub trait CatalogAggregate: Default + Serialize + DeserializeOwned + Send + Sync {
    type Command: Send;
    type Event: Serialize + DeserializeOwned + Send;
    type Error: Send;

    /// Its `aggregate_type` in the log.
    const AGGREGATE_TYPE: &'static str;
    /// The view table and its id column.
    const TABLE: &'static str;
    const ID_COLUMN: &'static str;
    /// `INSERT INTO <table> (<columns>)`: `view_values` fills the columns
    /// between the id and `version, last_hash, state`, which come last.
    const INSERT_INTO: &'static str;
    /// The `ON CONFLICT` clause that replaces an older row.
    const ON_CONFLICT: &'static str;

    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    fn apply(&mut self, event: Self::Event);
    fn event_type(event: &Self::Event) -> &'static str;
    fn exists(&self) -> bool;
    fn id(&self) -> &str;
    fn tenant_id(&self) -> &str;
    /// The row's columns after the id and before `version`.
    fn view_values(&self) -> Vec<SqlValue>;

    /// Whether other aggregates' commands are decided on this one's
    /// version ([`keyledger_eventlog::Guard`]): its appends are then
    /// ordered against theirs ([`EventLog::append_guarding`]).
    const GUARDED: bool = false;
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError<E> {
    #[error(transparent)]
    Refused(E),
    /// A unique index of the view refused the row (a product code taken).
    #[error("another live record of the tenant holds this value")]
    Taken,
    #[error("the record kept changing under this command")]
    Contended,
    #[error(transparent)]
    Store(#[from] CatalogStoreError),
}

/// A failure of the catalog's storage, with the library error behind it.
#[derive(Debug, thiserror::Error)]
pub enum CatalogStoreError {
    #[error("catalog store: a query on the view table failed")]
    Database(#[from] sqlx::Error),
    #[error("catalog store: appending the record's events failed")]
    Append(#[source] sqlx::Error),
    #[error("catalog store: reading the record's events failed")]
    Log(#[from] EventLogError),
    #[error("catalog store: {what} does not serialize")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("catalog store: {what} does not decode")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A data fault with no library error behind it.
    #[error("catalog store: event {event_id} has no occurred_at")]
    NoOccurredAt { event_id: String },
}

impl<E> From<sqlx::Error> for CatalogError<E> {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

impl<E> From<EventLogError> for CatalogError<E> {
    fn from(error: EventLogError) -> Self {
        Self::Store(error.into())
    }
}

/// An aggregate as its row holds it: its state, the sequence of its last
/// event and that event's chain hash.
#[derive(Debug, Clone)]
pub struct Stored<A> {
    pub record: A,
    pub version: i64,
    pub last_hash: String,
}

/// Records read for the hot path (a validate that needs its license's
/// product), each with when it was read; `None` remembers an absence.
/// Records by id, each with when it was read (`None`: there is none).
type CacheMap<A> = HashMap<String, (Instant, Option<Arc<A>>)>;
type Cache<A> = Arc<Mutex<CacheMap<A>>>;

/// Most records the cache holds; past it, it starts over.
const CACHE_CAPACITY: usize = 10_000;

pub struct CatalogStore<A> {
    db: Database,
    log: EventLog,
    cache: Cache<A>,
}

impl<A> Clone for CatalogStore<A> {
    fn clone(&self) -> Self {
        Self { db: self.db.clone(), log: self.log.clone(), cache: self.cache.clone() }
    }
}

impl<A> std::fmt::Debug for CatalogStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStore").field("db", &self.db).finish_non_exhaustive()
    }
}

/// For [`CatalogStore::list`]: no filter (with an empty `filter_value`).
pub const NO_FILTER: &str = "$4 = ''";

/// The raw row of a view: state, version, last hash.
pub type ViewRow = (String, i64, String);

impl<A: CatalogAggregate> CatalogStore<A> {
    pub fn new(db: Database) -> Self {
        Self { log: EventLog::new(db.clone()), db, cache: Arc::default() }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The record with this id, deleted ones included.
    pub async fn get(&self, id: &str) -> Result<Option<Stored<A>>, CatalogError<A::Error>> {
        let sql = format!("SELECT state, version, last_hash FROM {} WHERE {} = $1", A::TABLE, A::ID_COLUMN);
        let row: Option<ViewRow> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)?;
        row.map(decode).transpose()
    }

    /// The record with this id as read at most `max_age` ago: a write in
    /// this process shows at once, another process's within `max_age`.
    pub async fn get_cached(&self, id: &str, max_age: Duration) -> Result<Option<Arc<A>>, CatalogError<A::Error>> {
        if let Some((read_at, record)) = self.lock_cache().get(id) {
            if read_at.elapsed() < max_age {
                return Ok(record.clone());
            }
        }
        let record = self.get(id).await?.map(|stored| Arc::new(stored.record));
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(id.to_owned(), (Instant::now(), record.clone()));
        Ok(record)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, CacheMap<A>> {
        // Entries are whole values: a panic elsewhere can't leave one half-written.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides `command` on the record's latest state and appends what it
    /// decided with the record's new row; returns the record after it.
    /// `build` makes the command afresh for each attempt.
    pub async fn execute(
        &self,
        id: &str,
        build: impl Fn() -> A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<Stored<A>, CatalogError<A::Error>> {
        let metadata = serde_json::to_value(metadata).map_err(serialize_error("the command's metadata"))?;
        for _ in 0..ATTEMPTS {
            let current = self.get(id).await?;
            let (mut record, version, last_hash) = match current {
                Some(stored) => (stored.record, stored.version, stored.last_hash),
                None => (A::default(), 0, String::new()),
            };
            let events = record.decide(build()).map_err(CatalogError::Refused)?;
            if events.is_empty() {
                return Ok(Stored { record, version, last_hash });
            }
            let payloads: Vec<(i64, &'static str, Value)> = events
                .iter()
                .enumerate()
                .map(|(n, event)| {
                    let payload = serde_json::to_value(event).map_err(serialize_error("a new event"))?;
                    Ok((version + n as i64 + 1, A::event_type(event), payload))
                })
                .collect::<Result<_, CatalogError<A::Error>>>()?;
            for event in events {
                record.apply(event);
            }
            let new_version = version + payloads.len() as i64;
            let new_events: Vec<NewEvent<'_>> = payloads
                .iter()
                .map(|(sequence, event_type, payload)| NewEvent {
                    aggregate_type: A::AGGREGATE_TYPE,
                    aggregate_id: id,
                    sequence: *sequence,
                    event_type,
                    event_version: EVENT_VERSION,
                    payload,
                    metadata: &metadata,
                })
                .collect();
            let row = projected_row(id, &record, new_version)?;
            let appended = if A::GUARDED {
                self.log.append_guarding(&new_events, &last_hash, Some(&row)).await
            } else {
                self.log.append_after(&new_events, &last_hash, Some(&row)).await
            };
            self.lock_cache().remove(id);
            match appended {
                Ok(hashes) => {
                    let last_hash = hashes.last().cloned().unwrap_or_default();
                    return Ok(Stored { record, version: new_version, last_hash });
                }
                Err(AppendError::Conflict | AppendError::GuardMoved) => continue,
                Err(AppendError::Database(sqlx::Error::Database(error))) if error.is_unique_violation() => {
                    return Err(CatalogError::Taken)
                }
                Err(AppendError::Database(error)) => return Err(CatalogStoreError::Append(error).into()),
            }
        }
        Err(CatalogError::Contended)
    }

    /// The record's history, as the log's envelopes.
    pub async fn history(&self, id: &str, after: i64, limit: i64) -> Result<Vec<Value>, CatalogError<A::Error>> {
        let events = self.log.aggregate_history(A::AGGREGATE_TYPE, id, after, limit).await?;
        Ok(events.iter().map(LoggedEvent::envelope).collect())
    }

    /// The record as it was at `at`, folded from its events recorded up to
    /// then, with the sequence of the last of them; `None` when it did not
    /// exist yet.
    pub async fn state_at(&self, id: &str, at: DateTime<Utc>) -> Result<Option<(A, i64)>, CatalogError<A::Error>> {
        let events = self.log.aggregate_history(A::AGGREGATE_TYPE, id, 0, i64::MAX).await?;
        let mut record = A::default();
        let mut version = 0;
        for event in events {
            let occurred_at = event
                .occurred_at()
                .ok_or_else(|| CatalogStoreError::NoOccurredAt { event_id: event.event_id.clone() })?;
            if occurred_at > at {
                break;
            }
            version = event.sequence;
            record.apply(serde_json::from_value(event.payload).map_err(decode_error("an event's payload"))?);
        }
        Ok((version > 0).then_some((record, version)))
    }

    /// A tenant's live records, oldest first, `limit` after record `after`,
    /// narrowed by `filter` (SQL over the view's columns binding `$4`,
    /// given `filter_value`; `TRUE` for none).
    pub async fn list(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
        filter: &str,
        filter_value: &str,
    ) -> Result<Vec<Stored<A>>, CatalogError<A::Error>> {
        let (table, id) = (A::TABLE, A::ID_COLUMN);
        let sql = format!(
            "SELECT state, version, last_hash FROM {table} WHERE tenant_id = $1 AND deleted = 0
               AND ($2 = '' OR (created_at, {id}) > (SELECT created_at, {id} FROM {table} WHERE {id} = $2))
               AND ({filter})
             ORDER BY created_at, {id} LIMIT $3"
        );
        let rows: Vec<ViewRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(after.unwrap_or_default())
            .bind(limit)
            .bind(filter_value)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    /// A page of a tenant's live records by position (`offset` rows
    /// skipped), oldest first, narrowed by `filter` as in
    /// [`CatalogStore::list`] (binding `$4`): for clients that page by
    /// page number. Deep pages cost what they skip.
    pub async fn page(
        &self,
        tenant_id: &str,
        offset: i64,
        limit: i64,
        filter: &str,
        filter_value: &str,
    ) -> Result<Vec<Stored<A>>, CatalogError<A::Error>> {
        let (table, id) = (A::TABLE, A::ID_COLUMN);
        let sql = format!(
            "SELECT state, version, last_hash FROM {table} WHERE tenant_id = $1 AND deleted = 0 AND ({filter})
             ORDER BY created_at, {id} LIMIT $3 OFFSET $2"
        );
        let rows: Vec<ViewRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(offset)
            .bind(limit)
            .bind(filter_value)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    /// The tenant's live record whose view row has `number` (a view with a
    /// `number` column: customers).
    pub async fn by_number(&self, tenant_id: &str, number: i64) -> Result<Option<Stored<A>>, CatalogError<A::Error>> {
        let sql = format!(
            "SELECT state, version, last_hash FROM {} WHERE tenant_id = $1 AND number = $2 AND number > 0 AND deleted = 0",
            A::TABLE
        );
        let row: Option<ViewRow> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(tenant_id).bind(number).fetch_optional(pool).await)?;
        row.map(decode).transpose()
    }
}

fn serialize_error<E>(what: &'static str) -> impl Fn(serde_json::Error) -> CatalogError<E> {
    move |source| CatalogError::Store(CatalogStoreError::Serialize { what, source })
}

fn decode_error<E>(what: &'static str) -> impl Fn(serde_json::Error) -> CatalogError<E> {
    move |source| CatalogError::Store(CatalogStoreError::Decode { what, source })
}

fn decode<A: CatalogAggregate>((state, version, last_hash): ViewRow) -> Result<Stored<A>, CatalogError<A::Error>> {
    let record = serde_json::from_str(&state).map_err(decode_error("a view row's state"))?;
    Ok(Stored { record, version, last_hash })
}

fn projected_row<A: CatalogAggregate>(
    id: &str,
    record: &A,
    version: i64,
) -> Result<ProjectedRow, CatalogError<A::Error>> {
    let state = serde_json::to_string(record).map_err(serialize_error("the record's state"))?;
    let mut values = vec![SqlValue::Text(id.to_owned())];
    values.extend(record.view_values());
    values.extend([SqlValue::Int(version), SqlValue::AppendedHash, SqlValue::Text(state)]);
    Ok(ProjectedRow { insert_into: A::INSERT_INTO, values, on_conflict: A::ON_CONFLICT.to_owned() })
}

/// Fixed-width RFC 3339, so text order is time order.
pub fn sortable(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)).unwrap_or_default()
}
