//! One handle over either backend, with the migrations of each.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// A failure of the log or its database. A variant that wraps a
/// library's error names the operation and keeps the error as its
/// source, so a log line with the whole chain says what failed and why.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("unsupported database URL: expected postgres://… or sqlite://…")]
    UnsupportedUrl,
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a database query failed")]
    Query(#[from] sqlx::Error),
    /// Stored data that breaks the log's own rules (a gap in a chain, a
    /// transaction id that is not a number): described, as no library
    /// error is behind it.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A read of the SQLite file outside the pool (see `sqlite_file`).
    #[error("{what}")]
    SqliteFile {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("stored data does not decode: {what}")]
    Undecodable {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} does not serialize")]
    Unencodable {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A task reading part of the log panicked or was cancelled, so what
    /// it read is incomplete.
    #[error("a reader of part of the log stopped before its end")]
    Stopped(#[source] tokio::task::JoinError),
    /// One failure met by every reader of the tail's shared window.
    #[error(transparent)]
    Shared(std::sync::Arc<EventLogError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A connection pool on one of the two backends. Code that runs the same
/// SQL on both matches with [`on_pool!`](crate::on_pool).
#[derive(Debug, Clone)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds. SQL text
/// shared by both backends uses `$1`-style placeholders, which SQLite
/// accepts too.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Database::Postgres($pool) => $body,
            $crate::Database::Sqlite($pool) => $body,
        }
    };
}

/// A pooled PostgreSQL connection idle this long is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

impl Database {
    /// Connects by URL scheme. SQLite files are created when missing and run
    /// in WAL mode, so readers never wait for the single writer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, EventLogError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection it hands out by default: a
                // round trip before each query, about a tenth of the
                // server's CPU under write load. Only a connection that sat
                // idle long enough to have been dropped by something in
                // between is checked.
                .test_before_acquire(false)
                .before_acquire(|connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for > PING_IF_IDLE_FOR {
                            sqlx::Connection::ping(connection).await?;
                        }
                        Ok(true)
                    })
                })
                .connect(url)
                .await
                .map_err(EventLogError::Connect)?;
            Ok(Self::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(EventLogError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(EventLogError::Connect)?;
            Ok(Self::Sqlite(pool))
        } else {
            Err(EventLogError::UnsupportedUrl)
        }
    }

    /// The most connections the pool opens at once.
    pub fn max_connections(&self) -> u32 {
        on_pool!(self, pool => pool.options().get_max_connections())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending migrations. Safe to run from several processes at
    /// once: sqlx takes an advisory lock on PostgreSQL.
    pub async fn migrate(&self) -> Result<(), EventLogError> {
        match self {
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// A round trip to the store, for health checks.
    pub async fn ping(&self) -> Result<(), EventLogError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
