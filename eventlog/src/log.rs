//! Appending to the log, and reading it back in global order: the tail
//! that read models and consumers follow, an aggregate's history, and the
//! verification of every hash chain.
//!
//! The log holds several aggregate types (licenses, products), each
//! aggregate with its own stream and hash chain; the tail carries them all
//! in one order, and each reader takes the types it knows.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::chain::{chain_hash, ChainedContent};
use crate::group_commit::{self, GroupCommit};
use crate::tail_cache::{TailCache, TailRow};
use crate::{Database, EventLogError};

/// The aggregate type of licenses.
pub const AGGREGATE_TYPE: &str = "License";
/// The aggregate type of products.
pub const PRODUCT_AGGREGATE: &str = "Product";
/// The aggregate type of customers.
pub const CUSTOMER_AGGREGATE: &str = "Customer";
/// A tenant's own stream: its system key's issues.
pub const TENANT_AGGREGATE: &str = "Tenant";

/// Where a reader of the tail has got to. On PostgreSQL events are read in
/// `(txid, position)` order; on SQLite `txid` is always 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cursor {
    pub txid: i64,
    pub position: i64,
}

impl Cursor {
    /// Before the first event: a reader starting here sees the whole log.
    pub const START: Cursor = Cursor { txid: 0, position: 0 };
}

/// An event as stored, with everything a consumer or an auditor needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedEvent {
    pub cursor: Cursor,
    pub position: i64,
    pub event_id: String,
    /// `License`, `Product`.
    pub aggregate_type: String,
    /// The aggregate's id: a license's, or a product's.
    pub license_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub hash: String,
}

/// An event as a replay needs it: see [`EventLog::tail_payloads`].
#[derive(Debug, Clone)]
pub struct PayloadOnly {
    pub cursor: Cursor,
    pub aggregate_type: String,
    /// The aggregate's id: see [`LoggedEvent::license_id`].
    pub license_id: String,
    pub sequence: i64,
    /// The payload as stored JSON text.
    pub payload: String,
    pub hash: String,
}

impl PayloadOnly {
    /// Whether this is a license's event, the only kind license read
    /// models fold.
    pub fn is_license(&self) -> bool {
        self.aggregate_type == AGGREGATE_TYPE
    }

    /// Where the event is in the log, for error messages.
    pub fn describe(&self) -> String {
        let kind = self.aggregate_type.to_lowercase();
        format!("event {} of {kind} {} (position {})", self.sequence, self.license_id, self.cursor.position)
    }
}

/// The version of [`LoggedEvent::envelope`]'s shape.
pub const ENVELOPE_VERSION: u32 = 1;

impl LoggedEvent {
    /// When the event happened, as its metadata records it (every event
    /// keyledger writes has `occurred_at`).
    pub fn occurred_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.metadata.get("occurred_at")?.as_str()?;
        chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&chrono::Utc))
    }

    /// The event as consumers see it: the API's history and, later, the
    /// NATS relay. `data` is the event's own fields; the stored payload
    /// wraps them in the event type's name.
    pub fn envelope(&self) -> Value {
        self.clone().into_envelope()
    }

    /// [`LoggedEvent::envelope`], moving the payload and metadata into it
    /// rather than copying them: the tail builds one for every event.
    pub fn into_envelope(self) -> Value {
        let Self {
            event_id,
            position,
            aggregate_type,
            license_id,
            sequence,
            event_type,
            event_version,
            payload,
            metadata,
            hash,
            ..
        } = self;
        let data = match payload {
            Value::Object(mut wrapper) if wrapper.len() == 1 && wrapper.contains_key(&event_type) => {
                wrapper.remove(&event_type).unwrap_or_default()
            }
            other => other,
        };
        // An event about one device names the device's id beside its
        // machine hash, as the devices list shows it.
        let device_id = data["machine"]
            .as_str()
            .and_then(keyledger_domain::MachineHash::parse_hex)
            .map(|machine| keyledger_domain::device_id(&license_id, &machine));
        let tenant_id = metadata.get("tenant_id").cloned().unwrap_or(Value::Null);
        let occurred_at = metadata.get("occurred_at").cloned().unwrap_or(Value::Null);
        let named_license =
            if aggregate_type == AGGREGATE_TYPE { Value::from(license_id.clone()) } else { Value::Null };
        // Built field by field, not with `json!`, which would copy `data`
        // and `metadata` by serialising them again.
        let mut envelope = serde_json::Map::new();
        let mut put = |key: &str, value: Value| envelope.insert(key.to_owned(), value);
        put("envelopeVersion", Value::from(ENVELOPE_VERSION));
        put("eventId", Value::from(event_id));
        put("position", Value::from(position));
        put("aggregateType", Value::from(aggregate_type));
        put("aggregateId", Value::from(license_id));
        put("licenseId", named_license);
        put("tenantId", tenant_id);
        put("sequence", Value::from(sequence));
        put("type", Value::from(event_type));
        put("version", Value::from(event_version));
        put("occurredAt", occurred_at);
        put("data", data);
        put("metadata", metadata);
        put("hash", Value::from(hash));
        if let Some(device_id) = device_id {
            put("deviceId", Value::from(device_id.into_string()));
        }
        Value::Object(envelope)
    }
}

/// One event to append, as cqrs-es serialised it.
pub struct NewEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

/// Another aggregate a command was decided on, at the version it was
/// decided on: its last event's sequence (0 before its first).
#[derive(Debug, Clone)]
pub struct Guard {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

impl Guard {
    /// The guarded aggregate's last sequence (0 when it has none).
    pub(crate) const LAST_SEQUENCE: &'static str =
        "SELECT COALESCE(MAX(sequence), 0)::int8 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2";

    async fn last_sequence(&self, connection: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(&self.aggregate_type)
        .bind(&self.aggregate_id)
        .fetch_one(connection)
        .await
    }

    /// The advisory lock's key on PostgreSQL: the aggregate's, hashed.
    pub(crate) fn lock_key(aggregate_type: &str, aggregate_id: &str) -> String {
        format!("{aggregate_type}:{aggregate_id}")
    }
}

/// How an append is ordered against others beyond its own chain.
#[derive(Clone, Copy)]
enum Lock<'a> {
    None,
    Guarded(&'a Guard),
    Guarding,
}

/// The log on either backend.
#[derive(Debug, Clone)]
pub struct EventLog {
    db: Database,
    /// PostgreSQL appends of this log and its clones, written in batches.
    group: Arc<GroupCommit>,
    /// The newest stretch of the tail, shared by this log's readers.
    tail_cache: Arc<TailCache>,
}

const EVENT_COLUMNS: &str =
    "position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash";
const PREVIOUS_HASH: &str = "SELECT hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";

impl EventLog {
    pub fn new(db: Database) -> Self {
        Self { db, group: Arc::new(GroupCommit::new()), tail_cache: Arc::default() }
    }

    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Appends one command's events to a license, looking up the hash the
    /// first one chains to. For writers that hold no state of their own;
    /// commands use [`EventLog::append_after`].
    pub async fn append(&self, events: &[NewEvent<'_>]) -> Result<Vec<String>, AppendError> {
        let Some(first) = events.first() else { return Ok(Vec::new()) };
        let previous: Option<String> = crate::on_pool!(&self.db, pool => sqlx::query_scalar(PREVIOUS_HASH)
            .bind(first.aggregate_type)
            .bind(first.aggregate_id)
            .bind(first.sequence - 1)
            .fetch_optional(pool)
            .await)?;
        self.append_after(events, previous.as_deref().unwrap_or_default(), None).await
    }

    /// Appends one command's events to a license, the first chained to
    /// `previous_hash` (the license's last event's; empty before its
    /// first), and writes `projected` in the same transaction: a read
    /// model that reflects these events and nothing else. Returns the new
    /// events' hashes.
    ///
    /// Fails with [`AppendError::Conflict`] if the license has moved on
    /// since the caller loaded it: another writer took the sequence, or
    /// the last event's hash is not `previous_hash`. So a caller may load
    /// the license from anywhere (its own memory), and the log still only
    /// takes events decided on its latest state. On PostgreSQL it is one
    /// statement, shared with other aggregates' appends queued at the same
    /// moment (`group_commit`); on SQLite one transaction, with this
    /// process's appends taking turns before asking SQLite for its write
    /// lock.
    pub async fn append_after(
        &self,
        events: &[NewEvent<'_>],
        previous_hash: &str,
        projected: Option<&ProjectedRow>,
    ) -> Result<Vec<String>, AppendError> {
        self.append_with(events, previous_hash, projected, Lock::None).await
    }

    /// As [`EventLog::append_after`], and only while `guard`'s aggregate
    /// (another one than the events') is still at the version the command
    /// was decided on; [`AppendError::GuardMoved`] when it moved on. For
    /// a command whose decision rests on another aggregate: a license
    /// generated for a product, refused once the product was changed or
    /// deleted. Appends to the guarded aggregate must go through
    /// [`EventLog::append_guarding`], so the two are ordered across
    /// processes: on PostgreSQL by an advisory lock on the guarded
    /// aggregate (shared here, exclusive there), on SQLite by its one
    /// writer at a time.
    pub async fn append_guarded(
        &self,
        events: &[NewEvent<'_>],
        previous_hash: &str,
        projected: Option<&ProjectedRow>,
        guard: &Guard,
    ) -> Result<Vec<String>, AppendError> {
        self.append_with(events, previous_hash, projected, Lock::Guarded(guard)).await
    }

    /// As [`EventLog::append_after`], for an aggregate that other commands
    /// guard on ([`EventLog::append_guarded`]): on PostgreSQL it waits for
    /// guarded appends under way and keeps new ones waiting until it has
    /// committed. A transaction of its own, outside group commit: such
    /// aggregates (products) change rarely.
    pub async fn append_guarding(
        &self,
        events: &[NewEvent<'_>],
        previous_hash: &str,
        projected: Option<&ProjectedRow>,
    ) -> Result<Vec<String>, AppendError> {
        self.append_with(events, previous_hash, projected, Lock::Guarding).await
    }

    async fn append_with(
        &self,
        events: &[NewEvent<'_>],
        previous_hash: &str,
        projected: Option<&ProjectedRow>,
        lock: Lock<'_>,
    ) -> Result<Vec<String>, AppendError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let identified = identify_all(events, previous_hash);
        let appended = match &self.db {
            Database::Postgres(pool) => {
                let command = group_commit::Command::new(events, &identified, previous_hash, projected);
                match lock {
                    Lock::None => self.group.append(pool, command).await?,
                    Lock::Guarded(guard) => group_commit::write_locked(pool, &command, Some(guard), false).await?,
                    Lock::Guarding => group_commit::write_locked(pool, &command, None, true).await?,
                }
                events.len()
            }
            Database::Sqlite(pool) => {
                let _turn = SQLITE_WRITES.lock().await;
                // IMMEDIATE takes the write lock up front, so positions are
                // handed out by one writer at a time.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                if let Lock::Guarded(guard) = lock {
                    // Read under the write lock: no other process can
                    // append to the guarded aggregate until this commits.
                    if guard.last_sequence(&mut tx).await? != guard.sequence {
                        tx.rollback().await?;
                        return Err(AppendError::GuardMoved);
                    }
                }
                let appended = sqlite_write(&mut tx, events, &identified, previous_hash, projected).await?;
                if appended == events.len() {
                    tx.commit().await?;
                } else {
                    // Roll back while this process's turn is still held, so
                    // the next writer doesn't find the lock taken.
                    tx.rollback().await?;
                }
                appended
            }
        };
        if appended != events.len() {
            return Err(AppendError::Conflict);
        }
        crate::commits::committed_here();
        Ok(identified.into_iter().map(|(_, hash)| hash).collect())
    }

    /// Appends many commands' events, each to an aggregate of its own, as
    /// [`EventLog::append_after`] would one by one: for bulk loading (the
    /// `scale` bench's million licenses). On SQLite the batch is one
    /// transaction, all or nothing; on PostgreSQL each command goes
    /// through group commit at once, whole or not at all.
    pub async fn append_batch(&self, commands: &[BatchedAppend<'_>]) -> Result<(), AppendError> {
        match &self.db {
            Database::Postgres(_) => {
                let appends = commands.iter().map(|command| {
                    self.append_after(&command.events, command.previous_hash, command.projected.as_ref())
                });
                futures::future::try_join_all(appends).await?;
            }
            Database::Sqlite(pool) => {
                let _turn = SQLITE_WRITES.lock().await;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                for command in commands {
                    let identified = identify_all(&command.events, command.previous_hash);
                    let appended = sqlite_write(
                        &mut tx,
                        &command.events,
                        &identified,
                        command.previous_hash,
                        command.projected.as_ref(),
                    )
                    .await?;
                    if appended != command.events.len() {
                        tx.rollback().await?;
                        return Err(AppendError::Conflict);
                    }
                }
                tx.commit().await?;
                crate::commits::committed_here();
            }
        }
        Ok(())
    }

    /// Up to `limit` events after `after`, in the order every reader
    /// agrees on. On PostgreSQL only transactions older than the oldest
    /// one still running are read, so an event that commits late can
    /// never land behind a cursor already handed out.
    ///
    /// Readers of one log and its clones share the newest stretch of the
    /// tail ([`crate::tail_cache`]): a batch may end where that stretch
    /// does, shorter than `limit` although more is committed; reading on
    /// from its end fetches the rest.
    pub async fn tail(&self, after: Cursor, limit: i64) -> Result<Vec<LoggedEvent>, EventLogError> {
        let rows = self.tail_rows(after, limit).await?;
        rows.iter().map(|row| logged_event(row)).collect()
    }

    /// Like [`EventLog::tail`], but only what replaying needs: each
    /// event's license, sequence, hash and payload as stored JSON text,
    /// which decodes straight into the event without an intermediate
    /// `Value`, and only if the reader needs it. (The rows are read whole
    /// all the same, as the window shared with [`EventLog::tail`] keeps
    /// them.)
    pub async fn tail_payloads(&self, after: Cursor, limit: i64) -> Result<Vec<PayloadOnly>, EventLogError> {
        let rows = self.tail_rows(after, limit).await?;
        Ok(rows
            .iter()
            .map(|row| PayloadOnly {
                cursor: row.cursor,
                aggregate_type: row.aggregate_type.clone(),
                license_id: row.aggregate_id.clone(),
                sequence: row.sequence,
                payload: row.payload.clone(),
                hash: row.hash.clone(),
            })
            .collect())
    }

    /// Like [`EventLog::tail`], each event as its envelope
    /// ([`LoggedEvent::envelope`]), with its cursor. An envelope is built
    /// once for all the readers of the shared window: the webhook
    /// dispatcher and the anomaly detector each read every event.
    pub async fn tail_envelopes(&self, after: Cursor, limit: i64) -> Result<Vec<(Cursor, Arc<Value>)>, EventLogError> {
        let rows = self.tail_rows(after, limit).await?;
        rows.iter()
            .map(|row| {
                let envelope = row
                    .envelope
                    .get_or_init(|| logged_event(row).map(|event| Arc::new(event.into_envelope())).map_err(Arc::new));
                envelope.clone().map(|envelope| (row.cursor, envelope)).map_err(EventLogError::Shared)
            })
            .collect()
    }

    /// How many tail reads of this log and its clones went to the
    /// database rather than the shared window.
    pub fn tail_database_reads(&self) -> u64 {
        self.tail_cache.database_reads()
    }

    async fn tail_rows(&self, after: Cursor, limit: i64) -> Result<Vec<Arc<TailRow>>, EventLogError> {
        let generation = crate::commits::generation();
        self.tail_cache.read(after, limit, generation, |after, limit| read_tail(&self.db, after, limit)).await
    }

    /// A license's events after global position `after`, oldest first. For
    /// one license, position order is sequence order: each append waits
    /// for the one before it to commit.
    pub async fn history(&self, license_id: &str, after: i64, limit: i64) -> Result<Vec<LoggedEvent>, EventLogError> {
        self.aggregate_history(AGGREGATE_TYPE, license_id, after, limit).await
    }

    /// Like [`EventLog::history`], for an aggregate of any type.
    pub async fn aggregate_history(
        &self,
        aggregate_type: &str,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, EventLogError> {
        self.aggregate_events(aggregate_type, id, "position > $3 ORDER BY sequence LIMIT $4", after, limit).await
    }

    /// The sequence of a license's last event (None: it has none): whether
    /// a state known at some sequence is still the latest, in one
    /// index-only read.
    pub async fn last_sequence(&self, license_id: &str) -> Result<Option<i64>, EventLogError> {
        const SQL: &str = "SELECT MAX(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2";
        let last: Option<i64> = crate::on_pool!(&self.db, pool => sqlx::query_scalar(SQL)
            .bind(AGGREGATE_TYPE).bind(license_id).fetch_one(pool).await)?;
        Ok(last)
    }

    /// The sequence and chain hash of an aggregate's last event (None: it
    /// has none): where its next event chains on.
    pub async fn head(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Option<(i64, String)>, EventLogError> {
        const SQL: &str = "SELECT sequence, hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
                            ORDER BY sequence DESC LIMIT 1";
        let head: Option<(i64, String)> = crate::on_pool!(&self.db, pool => sqlx::query_as(SQL)
            .bind(aggregate_type).bind(aggregate_id).fetch_optional(pool).await)?;
        Ok(head)
    }

    /// A license's events with sequences in `from..=to`, oldest first.
    pub async fn sequences(&self, license_id: &str, from: i64, to: i64) -> Result<Vec<LoggedEvent>, EventLogError> {
        self.aggregate_events(
            AGGREGATE_TYPE,
            license_id,
            "sequence >= $3 AND sequence <= $4 ORDER BY sequence",
            from,
            to,
        )
        .await
    }

    /// An aggregate's events picked by `filter`, which binds `$3` and `$4`.
    async fn aggregate_events(
        &self,
        aggregate_type: &str,
        license_id: &str,
        filter: &str,
        third: i64,
        fourth: i64,
    ) -> Result<Vec<LoggedEvent>, EventLogError> {
        let sql = |columns: &str| {
            format!("SELECT {columns} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND {filter}")
        };
        let events = match &self.db {
            Database::Postgres(pool) => {
                let rows = sqlx::query(&sql(&format!("txid::text AS txid, {EVENT_COLUMNS}")))
                    .bind(aggregate_type)
                    .bind(license_id)
                    .bind(third)
                    .bind(fourth)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(pg_event).collect::<Result<_, _>>()?
            }
            Database::Sqlite(pool) => {
                let rows = sqlx::query(&sql(EVENT_COLUMNS))
                    .bind(aggregate_type)
                    .bind(license_id)
                    .bind(third)
                    .bind(fourth)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(sqlite_event).collect::<Result<_, _>>()?
            }
        };
        Ok(events)
    }
}

impl EventLog {
    /// Where the consumer `name` has got to in the tail; the start of the
    /// log for a consumer never seen before.
    pub async fn checkpoint(&self, name: &str) -> Result<Cursor, EventLogError> {
        const SQL: &str = "SELECT txid, position FROM consumer_checkpoints WHERE name = $1";
        let row: Option<(i64, i64)> =
            crate::on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(name).fetch_optional(pool).await)?;
        Ok(row.map_or(Cursor::START, |(txid, position)| Cursor { txid, position }))
    }

    /// Records that consumer `name` has handed on everything up to `cursor`.
    pub async fn save_checkpoint(&self, name: &str, cursor: Cursor) -> Result<(), EventLogError> {
        const SQL: &str = SAVE_CHECKPOINT_SQL;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let _turn = write_turn(&self.db).await;
        crate::on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(name)
            .bind(cursor.txid)
            .bind(cursor.position)
            .bind(now)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}

impl EventLog {
    /// How far a consumer at `after` is behind: how many committed events
    /// follow it (counted up to `cap`), and when the oldest of them
    /// happened (its `occurred_at`).
    pub async fn behind(&self, after: Cursor, cap: i64) -> Result<(i64, Option<String>), EventLogError> {
        let count: i64 = match &self.db {
            Database::Postgres(pool) => {
                const SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM events \
                     WHERE (txid, position) > ($1::bigint::text::xid8, $2) LIMIT $3) AS behind";
                sqlx::query_scalar(SQL).bind(after.txid).bind(after.position).bind(cap).fetch_one(pool).await?
            }
            Database::Sqlite(pool) => {
                const SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE position > $1 LIMIT $2)";
                sqlx::query_scalar(SQL).bind(after.position).bind(cap).fetch_one(pool).await?
            }
        };
        if count == 0 {
            return Ok((0, None));
        }
        let oldest = self.tail(after, 1).await?.into_iter().next();
        let occurred_at = oldest.and_then(|e| e.metadata.get("occurred_at").and_then(Value::as_str).map(str::to_owned));
        Ok((count, occurred_at))
    }

    /// The cursor of the newest event committed so far, whether or not a
    /// tail can read it yet (on PostgreSQL, a transaction open elsewhere
    /// on the cluster holds the tail back). A reader that must see
    /// everything committed before it started reads until it passes this.
    pub async fn committed_end(&self) -> Result<Option<Cursor>, EventLogError> {
        self.last_cursor("").await
    }

    /// The cursor of the last event a tail can read now.
    pub async fn end_cursor(&self) -> Result<Option<Cursor>, EventLogError> {
        self.last_cursor("WHERE txid < pg_snapshot_xmin(pg_current_snapshot())").await
    }

    /// The newest event's cursor; `postgres_filter` narrows it on PostgreSQL.
    async fn last_cursor(&self, postgres_filter: &str) -> Result<Option<Cursor>, EventLogError> {
        let end = match &self.db {
            Database::Postgres(pool) => {
                let sql = format!(
                    "SELECT txid::text, position FROM events {postgres_filter} ORDER BY events.txid DESC, events.position DESC LIMIT 1"
                );
                let row: Option<(String, i64)> = sqlx::query_as(&sql).fetch_optional(pool).await?;
                row.map(|(txid, position)| {
                    let corrupt = || EventLogError::Corrupt(format!("transaction id {txid}"));
                    txid.parse().map(|txid| Cursor { txid, position }).map_err(|_| corrupt())
                })
                .transpose()?
            }
            Database::Sqlite(pool) => {
                let position: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(pool).await?;
                position.map(|position| Cursor { txid: 0, position })
            }
        };
        Ok(end)
    }
}

impl EventLog {
    /// On PostgreSQL the tail orders by transaction id, which only counts
    /// up within one cluster. A log restored from a dump into another
    /// cluster can hold ids ahead of the new cluster's, and new events
    /// would then sort behind every consumer's checkpoint and be skipped:
    /// refuse to run on such a log rather than lose events quietly.
    pub async fn check_transaction_ids(&self) -> Result<(), EventLogError> {
        let Database::Postgres(pool) = &self.db else { return Ok(()) };
        const NEWEST: &str = "SELECT txid::text FROM events ORDER BY events.txid DESC LIMIT 1";
        let Some(newest) = sqlx::query_scalar::<_, String>(NEWEST).fetch_optional(pool).await? else { return Ok(()) };
        let current: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text").fetch_one(pool).await?;
        let parse = |t: &str| t.parse::<u64>().map_err(|_| EventLogError::Corrupt(format!("transaction id {t}")));
        if parse(&newest)? >= parse(&current)? {
            return Err(EventLogError::Corrupt(format!(
                "the event log's newest transaction id ({newest}) is not older than this PostgreSQL cluster's \
                 ({current}): the log was restored into another cluster. Advance this cluster's transaction ids \
                 past it, or reset the tail's order, before starting keyledger"
            )));
        }
        Ok(())
    }

    /// Moves consumer `name` back to `cursor` (the start, to replay), for
    /// an operator who wants events handed on again.
    pub async fn rewind_checkpoint(&self, name: &str, cursor: Cursor) -> Result<(), EventLogError> {
        const SQL: &str = "DELETE FROM consumer_checkpoints WHERE name = $1";
        crate::on_pool!(&self.db, pool => sqlx::query(SQL).bind(name).execute(pool).await.map(drop))?;
        if cursor != Cursor::START {
            self.save_checkpoint(name, cursor).await?;
        }
        Ok(())
    }
}

/// Saves a consumer's checkpoint; binds name, txid, position, updated-at.
/// Public so a consumer can save it in the transaction of its own writes.
/// It only ever moves forward, so a consumer that lost its lease and
/// wakes up late can't drag it back; [`EventLog::rewind_checkpoint`] is
/// the deliberate way back.
pub const SAVE_CHECKPOINT_SQL: &str = "
INSERT INTO consumer_checkpoints (name, txid, position, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET txid = excluded.txid, position = excluded.position, updated_at = excluded.updated_at
 WHERE (consumer_checkpoints.txid, consumer_checkpoints.position) < (excluded.txid, excluded.position)";

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The license moved on since the caller loaded it; load and retry.
    #[error("another writer appended to the license first")]
    Conflict,
    /// The aggregate the command was guarded on moved on since the caller
    /// read it; read it again and decide again.
    #[error("the aggregate the command was decided on has changed since")]
    GuardMoved,
    #[error("appending events failed")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for AppendError {
    /// A violation of the events' primary key (license, sequence) means
    /// another writer took the sequence first: PostgreSQL 23505 on
    /// `events_pkey`, SQLite's primary-key code 1555. Any other unique
    /// violation (an event id, a license key) is a real error, not a race
    /// to retry.
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db_error) = &error {
            let lost_race = match db_error.code().as_deref() {
                Some("23505") => db_error.constraint() == Some("events_pkey"),
                Some("1555") => true,
                _ => false,
            };
            if lost_race {
                return AppendError::Conflict;
            }
        }
        AppendError::Database(error)
    }
}

/// A read-model row written in the same transaction as the events it
/// reflects, and only if they were appended: `{insert_into} VALUES (…)
/// {on_conflict}`.
#[derive(Debug, Clone)]
pub struct ProjectedRow {
    /// `INSERT INTO table (columns…)`
    pub insert_into: &'static str,
    pub values: Vec<SqlValue>,
    /// `ON CONFLICT … DO UPDATE …`, or empty.
    pub on_conflict: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    /// The chain hash of the last event appended with the row, which only
    /// the append knows (it names each event as it writes it).
    AppendedHash,
}

/// This process's SQLite writers take turns here rather than in SQLite's
/// busy handler, which sleeps for milliseconds between attempts while a
/// commit takes tens of microseconds.
static SQLITE_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// On SQLite, waits for this process's turn to write and holds it until
/// the guard is dropped; on PostgreSQL, nothing. Take it around a whole
/// write transaction, and never while already holding it.
pub async fn write_turn(db: &Database) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    match db {
        Database::Sqlite(_) => Some(SQLITE_WRITES.lock().await),
        Database::Postgres(_) => None,
    }
}

/// Appends the first event only if the license's last event is the one
/// the caller decided on: binds $10 (its sequence) and $11 (its hash).
const SQLITE_CHAIN_GUARD: &str = "
 WHERE $10 = 0 OR EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $10 AND hash = $11)";

/// Binds an event's columns, aggregate type first and hash last.
fn bind_event<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    event: &NewEvent<'q>,
    event_id: &'q str,
    hash: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q Value: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(event.aggregate_type)
        .bind(event.aggregate_id)
        .bind(event.sequence)
        .bind(event.event_type)
        .bind(event.event_version)
        .bind(event.payload)
        .bind(event.metadata)
        .bind(event_id)
        .bind(hash)
}

/// A fresh event id, and the event's chain hash after `previous`.
fn identify(previous: &str, event: &NewEvent<'_>) -> (String, String) {
    let event_id = uuid::Uuid::new_v4().to_string();
    let hash = chain_hash(
        previous,
        &ChainedContent {
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_id: &event_id,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
        },
    );
    (event_id, hash)
}

/// The first link where a license's stored events stop agreeing with
/// their chain, walking in sequence order from 1.
/// Each event's id and chain hash, the first chained to `previous_hash`.
fn identify_all(events: &[NewEvent<'_>], previous_hash: &str) -> Vec<(String, String)> {
    let mut previous = previous_hash.to_owned();
    events
        .iter()
        .map(|event| {
            let (event_id, hash) = identify(&previous, event);
            previous.clone_from(&hash);
            (event_id, hash)
        })
        .collect()
}

/// One command's append in [`EventLog::append_batch`].
pub struct BatchedAppend<'a> {
    pub events: Vec<NewEvent<'a>>,
    /// The hash the first event chains to; empty before an aggregate's first.
    pub previous_hash: &'a str,
    pub projected: Option<ProjectedRow>,
}

/// Writes one command's events (each with its id and hash) and its
/// projected row in a SQLite transaction holding the write lock; returns
/// how many events were written, fewer than all when the chain guard
/// turned the first away (then nothing else was written).
async fn sqlite_write(
    tx: &mut sqlx::SqliteConnection,
    events: &[NewEvent<'_>],
    identified: &[(String, String)],
    previous_hash: &str,
    projected: Option<&ProjectedRow>,
) -> Result<usize, sqlx::Error> {
    let Some(first) = events.first() else { return Ok(0) };
    let last_hash = identified.last().map(|(_, hash)| hash.as_str()).unwrap_or_default();
    let mut appended = 0;
    for (index, (event, (event_id, hash))) in events.iter().zip(identified).enumerate() {
        if appended < index {
            break; // The guard turned the first event away.
        }
        let guard = if index == 0 { SQLITE_CHAIN_GUARD } else { "" };
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash, position)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, (SELECT COALESCE(MAX(position), 0) + 1 FROM events){guard}"
        );
        let mut query = bind_event(sqlx::query(&sql), event, event_id, hash);
        if index == 0 {
            query = query.bind(first.sequence - 1).bind(previous_hash);
        }
        let done = query.execute(&mut *tx).await?;
        appended += done.rows_affected() as usize;
    }
    if appended == events.len() {
        if let Some(row) = projected {
            let placeholders = (1..=row.values.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
            let sql = format!("{} VALUES ({placeholders}) {}", row.insert_into, row.on_conflict);
            let query = row.values.iter().fold(sqlx::query(&sql), |query, value| match value {
                SqlValue::Text(text) => query.bind(text.as_str()),
                SqlValue::Int(number) => query.bind(*number),
                SqlValue::AppendedHash => query.bind(last_hash),
            });
            query.execute(&mut *tx).await?;
        }
    }
    Ok(appended)
}

/// The tail's rows after `after` on the database itself: see
/// [`EventLog::tail`] for the order and [`crate::tail_cache`] for who asks.
///
/// The PostgreSQL query selects `txid` as text and orders by
/// `events.txid`: a bare `txid` in ORDER BY would name the output column,
/// sorting transaction ids as strings ("999" after "1000") and without the
/// `events_tail` index.
async fn read_tail(db: &Database, after: Cursor, limit: i64) -> Result<Vec<TailRow>, EventLogError> {
    type Columns = (i64, i64, String, String, String, i64, String, String, String, String, String);
    let rows: Vec<Columns> = match db {
        Database::Postgres(pool) => {
            const SQL: &str = "SELECT txid::text::bigint, position, event_id, aggregate_type, aggregate_id, sequence,
                                      event_type, event_version, payload::text, metadata::text, hash FROM events
                                WHERE (txid, position) > ($1::bigint::text::xid8, $2)
                                  AND txid < pg_snapshot_xmin(pg_current_snapshot())
                                ORDER BY events.txid, events.position LIMIT $3";
            sqlx::query_as(SQL).bind(after.txid).bind(after.position).bind(limit).fetch_all(pool).await?
        }
        Database::Sqlite(pool) => {
            const SQL: &str = "SELECT 0, position, event_id, aggregate_type, aggregate_id, sequence,
                                      event_type, event_version, payload, metadata, hash FROM events
                                WHERE position > $1 ORDER BY position LIMIT $2";
            sqlx::query_as(SQL).bind(after.position).bind(limit).fetch_all(pool).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(
            |(
                txid,
                position,
                event_id,
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                event_version,
                payload,
                metadata,
                hash,
            )| {
                TailRow {
                    cursor: Cursor { txid, position },
                    event_id,
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    event_type,
                    event_version,
                    payload,
                    metadata,
                    hash,
                    envelope: Default::default(),
                }
            },
        )
        .collect())
}

/// A tail row as a [`LoggedEvent`], its JSON columns decoded.
fn logged_event(row: &TailRow) -> Result<LoggedEvent, EventLogError> {
    let json = |text: &str, column: &str| {
        serde_json::from_str(text).map_err(|source| EventLogError::Undecodable {
            what: format!("the {column} of event {}", row.event_id),
            source,
        })
    };
    Ok(LoggedEvent {
        cursor: row.cursor,
        position: row.cursor.position,
        event_id: row.event_id.clone(),
        aggregate_type: row.aggregate_type.clone(),
        license_id: row.aggregate_id.clone(),
        sequence: row.sequence,
        event_type: row.event_type.clone(),
        event_version: row.event_version.clone(),
        payload: json(&row.payload, "payload")?,
        metadata: json(&row.metadata, "metadata")?,
        hash: row.hash.clone(),
    })
}

fn pg_event(row: &sqlx::postgres::PgRow) -> Result<LoggedEvent, sqlx::Error> {
    let txid: String = row.try_get("txid")?;
    let txid = txid.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let mut event = common_event(row)?;
    event.cursor.txid = txid;
    Ok(event)
}

fn sqlite_event(row: &sqlx::sqlite::SqliteRow) -> Result<LoggedEvent, sqlx::Error> {
    common_event(row)
}

fn common_event<'r, R>(row: &'r R) -> Result<LoggedEvent, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Value: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let position: i64 = row.try_get("position")?;
    Ok(LoggedEvent {
        cursor: Cursor { txid: 0, position },
        position,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        license_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        hash: row.try_get("hash")?,
    })
}
