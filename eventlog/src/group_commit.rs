//! Group commit on PostgreSQL: appends of different aggregates made at
//! the same moment are written by one statement, in one transaction.
//!
//! A lone append costs PostgreSQL a statement, a transaction and a WAL
//! flush, and the three cost more than the rows it writes: measured with
//! pgbench on the append statement, sixteen licenses' activations written
//! by one statement go through about three and a half times faster than
//! sixteen statements. So appends are queued to one task per
//! [`crate::EventLog`], which starts a batch of whatever is queued as soon
//! as one of its [`MAX_IN_FLIGHT`] slots is free. Nothing waits on a timer:
//! a lone append is written at once, as before, and batches grow only
//! while the database is busy with earlier ones.
//!
//! Each command in a batch keeps its own all-or-nothing guard: its events
//! are written only if its aggregate's last event is still the one it was
//! decided on (the same guard as a lone append), so one stale command
//! doesn't hold back the others. An aggregate has at most one command in
//! flight from this process at a time; a second waits for the first to
//! commit. A batch that PostgreSQL refuses as a whole (another process
//! took a sequence in the same instant, a deadlock between two processes'
//! batches) is written again one command at a time, so each command gets
//! the outcome it would have had alone; a batch that never reached it (no
//! connection) fails every command in it at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};

use crate::log::{AppendError, Guard, NewEvent, ProjectedRow, SqlValue};

/// Batches being written at once. Two keep both of this machine's cores
/// busy while a third and fourth wait on their WAL flush; more only take
/// connections from the pool's readers.
const MAX_IN_FLIGHT: usize = 4;
/// Commands in one batch at most: bounds one statement's size and how long
/// its row locks are held.
const MAX_BATCH: usize = 128;

/// One command's events, ready to write: each already has its id and chain
/// hash.
#[derive(Debug)]
pub(crate) struct Command {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The sequence and hash of the aggregate's last event the command was
    /// decided on (0 and empty before its first).
    pub previous_sequence: i64,
    pub previous_hash: String,
    pub events: Vec<Event>,
    /// A read-model row to write with the events; its `AppendedHash` is
    /// already the command's last hash.
    pub projected: Option<ProjectedRow>,
}

#[derive(Debug)]
pub(crate) struct Event {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// JSON text.
    pub payload: String,
    /// JSON text.
    pub metadata: String,
    pub event_id: String,
    pub hash: String,
}

impl Command {
    /// One command's events, each with its id and chain hash
    /// (`identified`), chained after `previous_hash`; `projected`'s
    /// `AppendedHash` becomes the last of those hashes.
    pub fn new(
        events: &[NewEvent<'_>],
        identified: &[(String, String)],
        previous_hash: &str,
        projected: Option<&ProjectedRow>,
    ) -> Self {
        let first = &events[0];
        let last_hash = identified.last().map(|(_, hash)| hash.as_str()).unwrap_or_default();
        Self {
            aggregate_type: first.aggregate_type.to_owned(),
            aggregate_id: first.aggregate_id.to_owned(),
            previous_sequence: first.sequence - 1,
            previous_hash: previous_hash.to_owned(),
            events: events
                .iter()
                .zip(identified)
                .map(|(event, (event_id, hash))| Event {
                    sequence: event.sequence,
                    event_type: event.event_type.to_owned(),
                    event_version: event.event_version.to_owned(),
                    payload: event.payload.to_string(),
                    metadata: event.metadata.to_string(),
                    event_id: event_id.clone(),
                    hash: hash.clone(),
                })
                .collect(),
            projected: projected.map(|row| ProjectedRow {
                values: row
                    .values
                    .iter()
                    .map(|value| match value {
                        SqlValue::AppendedHash => SqlValue::Text(last_hash.to_owned()),
                        other => other.clone(),
                    })
                    .collect(),
                ..row.clone()
            }),
        }
    }

    fn aggregate(&self) -> (String, String) {
        (self.aggregate_type.clone(), self.aggregate_id.clone())
    }

    /// What must be alike for two commands to share a statement: the
    /// read-model table, its conflict clause and its columns' types.
    fn shape(&self) -> Option<(&'static str, &str, Vec<bool>)> {
        self.projected.as_ref().map(|row| {
            let kinds = row.values.iter().map(|value| matches!(value, SqlValue::Int(_))).collect();
            (row.insert_into, row.on_conflict.as_str(), kinds)
        })
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// The queue of one event log's PostgreSQL appends.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    sender: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
}

impl GroupCommit {
    pub fn new() -> Self {
        Self { sender: Mutex::new(None) }
    }

    /// Writes `command`, with others queued at the same moment. Conflict
    /// when the aggregate moved on since the command was decided.
    pub async fn append(&self, pool: &PgPool, command: Command) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { command, reply };
        let pending = match self.queue(pool).send(pending) {
            Ok(()) => match answer.await {
                Ok(outcome) => return outcome,
                // The writer ended with the command unanswered (its runtime
                // shut down, or the batch panicked). Answered as a lost
                // race: the caller loads the license from the log and
                // decides again, finding the command's events if they
                // were written.
                Err(_) => None,
            },
            Err(mpsc::error::SendError(pending)) => Some(pending),
        };
        match pending {
            Some(pending) => write_alone(pool, &pending.command).await,
            None => Err(AppendError::Conflict),
        }
    }

    /// The writer task's queue, starting the task on first use (or again,
    /// if the runtime it ran on has gone).
    fn queue(&self, pool: &PgPool) -> mpsc::UnboundedSender<Pending> {
        let mut sender = self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = sender.as_ref().filter(|sender| !sender.is_closed()) {
            return open.clone();
        }
        let (open, receiver) = mpsc::unbounded_channel();
        tokio::spawn(writer(pool.clone(), receiver));
        *sender = Some(open.clone());
        open
    }
}

/// Starts a batch whenever a slot is free and commands are waiting, until
/// the event log is dropped and every batch has been written.
async fn writer(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    // Aggregates with a command being written, by the batch writing it.
    let mut busy: HashSet<(String, String)> = HashSet::new();
    let mut batches: HashMap<Id, Vec<(String, String)>> = HashMap::new();
    let mut running = JoinSet::new();
    let mut open = true;
    loop {
        while running.len() < MAX_IN_FLIGHT {
            let batch = take_batch(&mut queue, &busy);
            if batch.is_empty() {
                break;
            }
            let aggregates: Vec<_> = batch.iter().map(|pending| pending.command.aggregate()).collect();
            busy.extend(aggregates.iter().cloned());
            let pool = pool.clone();
            let handle = running.spawn(async move { write_batch(&pool, batch).await });
            batches.insert(handle.id(), aggregates);
        }
        if !open && queue.is_empty() && running.is_empty() {
            return;
        }
        tokio::select! {
            received = receiver.recv(), if open => match received {
                Some(pending) => {
                    queue.push_back(pending);
                    while let Ok(pending) = receiver.try_recv() {
                        queue.push_back(pending);
                    }
                }
                None => open = false,
            },
            Some(done) = running.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    // A batch that panicked dropped its replies: each
                    // caller writes its command alone (see `append`).
                    Err(error) => error.id(),
                };
                for aggregate in batches.remove(&id).unwrap_or_default() {
                    busy.remove(&aggregate);
                }
            }
            // Closed and nothing running: whatever is still queued is
            // dropped, and its callers answered as above.
            else => return,
        }
    }
}

/// The next batch: the first waiting command whose aggregate is not being
/// written, and after it every waiting command of the same shape whose
/// aggregate is neither being written nor already in the batch. The rest
/// keep their order.
fn take_batch(queue: &mut VecDeque<Pending>, busy: &HashSet<(String, String)>) -> Vec<Pending> {
    let mut batch: Vec<Pending> = Vec::new();
    let mut taken: HashSet<(String, String)> = HashSet::new();
    let mut kept = VecDeque::with_capacity(queue.len());
    for pending in queue.drain(..) {
        let aggregate = pending.command.aggregate();
        let fits = batch.len() < MAX_BATCH
            && !busy.contains(&aggregate)
            && !taken.contains(&aggregate)
            && batch.first().is_none_or(|first| first.command.shape() == pending.command.shape());
        if fits {
            taken.insert(aggregate);
            batch.push(pending);
        } else {
            kept.push_back(pending);
        }
    }
    *queue = kept;
    batch
}

/// Writes a batch and answers each of its commands.
async fn write_batch(pool: &PgPool, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let pending = batch.pop().expect("one command");
        let outcome = write_alone(pool, &pending.command).await;
        let _ = pending.reply.send(outcome);
        return;
    }
    // Rows are locked in one order by every process's batches, so two
    // batches can't wait on each other.
    batch.sort_by(|a, b| {
        (&a.command.aggregate_type, &a.command.aggregate_id).cmp(&(&b.command.aggregate_type, &b.command.aggregate_id))
    });
    let commands: Vec<&Command> = batch.iter().map(|pending| &pending.command).collect();
    match write(pool, &commands).await {
        Ok(passed) => {
            for (index, pending) in batch.into_iter().enumerate() {
                let outcome = if passed.contains(&(index as i32)) { Ok(()) } else { Err(AppendError::Conflict) };
                let _ = pending.reply.send(outcome);
            }
        }
        // PostgreSQL refused the statement: one command may be at fault
        // (another writer took its sequence, a deadlock between two
        // processes' batches, a constraint), so each is tried alone.
        Err(error @ sqlx::Error::Database(_)) => {
            tracing::debug!(%error, commands = batch.len(), "a batch of appends failed; writing each alone");
            for pending in batch {
                let outcome = write_alone(pool, &pending.command).await;
                let _ = pending.reply.send(outcome);
            }
        }
        // The statement never reached PostgreSQL (no connection within the
        // pool's timeout, a broken one): trying each command alone would
        // only wait that long again for every one of them. Each command is
        // answered with that one error (which is not `Clone`) inside an I/O
        // error, what callers treat as a lost connection.
        Err(error) => {
            tracing::warn!(%error, commands = batch.len(), "a batch of appends could not be written");
            let shared = std::sync::Arc::new(error);
            for pending in batch {
                let failed = sqlx::Error::Io(std::io::Error::other(shared.clone()));
                let _ = pending.reply.send(Err(AppendError::Database(failed)));
            }
        }
    }
}

/// One command in a statement of its own: a violation of the events'
/// key means another writer took the sequence ([`AppendError::Conflict`]).
async fn write_alone(pool: &PgPool, command: &Command) -> Result<(), AppendError> {
    let passed = write(pool, &[command]).await.map_err(AppendError::from)?;
    if passed.is_empty() {
        return Err(AppendError::Conflict);
    }
    Ok(())
}

/// One command in a transaction of its own, ordered against others by an
/// advisory lock (held until commit): shared on `guard`'s aggregate, whose
/// version must still be the guard's ([`AppendError::GuardMoved`]), or
/// with `exclusive`, exclusive on the command's own aggregate. A guarded
/// append waits for an exclusive one under way and reads the guarded
/// aggregate after it committed; an exclusive one waits for the guarded
/// ones under way, which committed on the version they were decided on.
pub(crate) async fn write_locked(
    pool: &PgPool,
    command: &Command,
    guard: Option<&Guard>,
    exclusive: bool,
) -> Result<(), AppendError> {
    let mut tx = pool.begin().await?;
    if let Some(guard) = guard {
        let key = Guard::lock_key(&guard.aggregate_type, &guard.aggregate_id);
        sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        let last: i64 = sqlx::query_scalar(Guard::LAST_SEQUENCE)
            .bind(&guard.aggregate_type)
            .bind(&guard.aggregate_id)
            .fetch_one(&mut *tx)
            .await?;
        if last != guard.sequence {
            tx.rollback().await?;
            return Err(AppendError::GuardMoved);
        }
    }
    if exclusive {
        let key = Guard::lock_key(&command.aggregate_type, &command.aggregate_id);
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&key).execute(&mut *tx).await?;
    }
    let passed = write(&mut *tx, &[command]).await?;
    if passed.is_empty() {
        tx.rollback().await?;
        return Err(AppendError::Conflict);
    }
    tx.commit().await?;
    Ok(())
}

/// Writes each command whose guard passes, in one statement; answers the
/// indexes (into `commands`) of those written. Every command must have the
/// shape of the first.
async fn write<'c>(executor: impl sqlx::PgExecutor<'c>, commands: &[&Command]) -> Result<Vec<i32>, sqlx::Error> {
    let projected = commands[0].projected.as_ref();
    let sql = batch_sql(projected);
    let mut query = sqlx::query_scalar::<_, i32>(&sql)
        .bind((0..commands.len() as i32).collect::<Vec<_>>())
        .bind(commands.iter().map(|c| c.aggregate_type.as_str()).collect::<Vec<_>>())
        .bind(commands.iter().map(|c| c.aggregate_id.as_str()).collect::<Vec<_>>())
        .bind(commands.iter().map(|c| c.previous_sequence).collect::<Vec<_>>())
        .bind(commands.iter().map(|c| c.previous_hash.as_str()).collect::<Vec<_>>());
    let events: Vec<(i32, &Command, &Event)> = commands
        .iter()
        .enumerate()
        .flat_map(|(index, command)| command.events.iter().map(move |event| (index as i32, *command, event)))
        .collect();
    query = query
        .bind(events.iter().map(|(index, _, _)| *index).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, c, _)| c.aggregate_type.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, c, _)| c.aggregate_id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.sequence).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.event_version.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.payload.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.metadata.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.event_id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, _, e)| e.hash.as_str()).collect::<Vec<_>>());
    if let Some(first) = projected {
        let rows: Vec<&ProjectedRow> = commands.iter().filter_map(|c| c.projected.as_ref()).collect();
        for column in 0..first.values.len() {
            query = match first.values[column] {
                SqlValue::Int(_) => query.bind(
                    rows.iter()
                        .map(|row| if let SqlValue::Int(n) = &row.values[column] { *n } else { 0 })
                        .collect::<Vec<_>>(),
                ),
                _ => query.bind(
                    rows.iter()
                        .map(|row| match &row.values[column] {
                            SqlValue::Text(text) => text.as_str(),
                            _ => "",
                        })
                        .collect::<Vec<_>>(),
                ),
            };
        }
    }
    query.fetch_all(executor).await
}

/// The statement that writes a batch. A command passes its guard if its
/// aggregate's last event is the one it was decided on (so a command
/// decided on an older state is turned away here, alone, rather than
/// failing the whole batch on the events' key). The last event is looked
/// up with a lateral `ORDER BY … LIMIT 1`, one backward scan of the
/// primary key a command, not with `EXISTS`: PostgreSQL may answer a
/// correlated `EXISTS` by hashing the whole events table (a generic plan
/// for an array of unknown length made that choice, and each batch took a
/// quarter of a second).
///
/// It binds five arrays a command (index,
/// aggregate type and id, previous sequence and hash), ten an event (its
/// command's index, then the event's columns), and one a read-model
/// column; answers the indexes of the commands written.
fn batch_sql(projected: Option<&ProjectedRow>) -> String {
    let mut sql = String::from(
        "WITH commands AS (
           SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[], $5::text[])
                      AS c(idx, aggregate_type, aggregate_id, previous_sequence, previous_hash)),
         passed AS (
           SELECT c.idx FROM commands c
             LEFT JOIN LATERAL (SELECT e.sequence, e.hash FROM events e
                                 WHERE e.aggregate_type = c.aggregate_type AND e.aggregate_id = c.aggregate_id
                                 ORDER BY e.sequence DESC LIMIT 1) AS last ON true
            WHERE (c.previous_sequence = 0 AND last.sequence IS NULL)
               OR (last.sequence = c.previous_sequence AND last.hash = c.previous_hash)),
         appended AS (
           INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash)
           SELECT n.aggregate_type, n.aggregate_id, n.sequence, n.event_type, n.event_version,
                  n.payload::jsonb::json, n.metadata::jsonb::json, n.event_id, n.hash
             FROM unnest($6::int4[], $7::text[], $8::text[], $9::int8[], $10::text[], $11::text[],
                         $12::text[], $13::text[], $14::text[], $15::text[]) WITH ORDINALITY
                  AS n(idx, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash, ordinal)
            WHERE n.idx IN (SELECT idx FROM passed)
            ORDER BY n.ordinal
           RETURNING 1)",
    );
    if let Some(row) = projected {
        let arrays: Vec<String> = row
            .values
            .iter()
            .enumerate()
            .map(|(column, value)| {
                let kind = if matches!(value, SqlValue::Int(_)) { "int8" } else { "text" };
                format!("${}::{kind}[]", 16 + column)
            })
            .collect();
        let columns: Vec<String> = (1..=row.values.len()).map(|n| format!("p.c{n}")).collect();
        sql.push_str(&format!(
            ",
         projected AS (
           {} SELECT {} FROM unnest($1::int4[], {}) AS p(idx, {})
            WHERE p.idx IN (SELECT idx FROM passed)
           {} RETURNING 1)",
            row.insert_into,
            columns.join(", "),
            arrays.join(", "),
            (1..=row.values.len()).map(|n| format!("c{n}")).collect::<Vec<_>>().join(", "),
            row.on_conflict
        ));
    }
    sql.push_str(" SELECT idx FROM passed");
    sql
}
