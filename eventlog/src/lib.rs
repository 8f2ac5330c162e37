//! The append-only license event log.
//!
//! This crate owns the database connection ([`Database`], PostgreSQL or
//! embedded SQLite, chosen by URL), the schema migrations of both backends,
//! the cqrs-es event store that appends and loads `License` events, and the
//! [`EventLog`]: the global order every reader follows, each license's
//! history, and the hash chains that make tampering evident. Nothing here
//! knows about HTTP or read models.

mod chain;
mod checkpoint;
mod commits;
mod database;
mod group_commit;
mod key_order;
mod log;
mod repository;
mod secrets;
mod snapshot;
mod sqlite_file;
mod tail_cache;
mod verify;

pub use checkpoint::{CheckpointBody, CheckpointCheck, CheckpointCursor, Checkpoints, SignedCheckpoint};
pub use commits::{commits, committed_elsewhere, local_commits, COMMITS_CHANNEL};
pub use database::{Backend, Database, EventLogError};
pub use key_order::{each_range, KeyRange, StoredEvent};
pub use log::write_turn;
pub use log::{
    AppendError, BatchedAppend, Cursor, EventLog, Guard, LoggedEvent, NewEvent, PayloadOnly, ProjectedRow, SqlValue,
    AGGREGATE_TYPE, CUSTOMER_AGGREGATE, ENVELOPE_VERSION, PRODUCT_AGGREGATE, SAVE_CHECKPOINT_SQL, TENANT_AGGREGATE,
};
pub use repository::LogRepository;
pub use snapshot::{Loaded, Snapshots, SNAPSHOT_EVERY, SNAPSHOT_FORMAT};
pub use verify::{BrokenChain, ChainBreak, VerifyReport};

use cqrs_es::persist::PersistedEventStore;
use keyledger_domain::License;

/// The event store every command goes through. It runs in plain
/// event-store mode: cqrs-es 0.5.0's snapshot modes apply each commit's
/// events to the stored snapshot twice.
pub type LicenseEventStore = PersistedEventStore<LogRepository, License>;

pub fn license_event_store(database: &Database) -> LicenseEventStore {
    PersistedEventStore::new_event_store(LogRepository::new(database))
}

/// A log filter directive that keeps PostgreSQL's notices (such as
/// "relation _sqlx_migrations already exists, skipping" on every start)
/// out of the info log: the database driver logs them under its own
/// target, which only this crate knows.
pub const QUIET_DATABASE_NOTICES: &str = "sqlx::postgres::notice=warn";
