//! One active consumer per name across every process on a database.

use std::time::Duration;

use keyledger_app::client::error_chain;
use keyledger_eventlog::Database;
use sqlx::{Connection, PgConnection};

/// Held while this process is the active consumer. On PostgreSQL it is a
/// session advisory lock on a connection of its own, outside the pool (a
/// lease held for hours must not take a connection the API needs): if
/// this process dies or loses that connection, the lock goes with it and a
/// standby takes over. On SQLite it is an exclusive lock on a file beside
/// the database (`<database>.lease-<name>`), so several processes on one
/// database file run each once-per-database job once too; the kernel
/// frees the lock when its holder exits or dies.
pub enum Lease {
    Postgres(PgConnection),
    /// None for a database with no file (in memory): one process only.
    Sqlite(Option<std::fs::File>),
}

const RETRY: Duration = Duration::from_millis(500);

impl Lease {
    /// Waits until this process holds the lease for `name`. A standby
    /// keeps one connection while it waits and asks on it every half
    /// second.
    pub async fn acquire(db: &Database, name: &str) -> Lease {
        let pool = match db {
            Database::Postgres(pool) => pool,
            Database::Sqlite(pool) => return acquire_file(pool, name).await,
        };
        let mut waiting: Option<PgConnection> = None;
        loop {
            let connection = match waiting.take() {
                Some(connection) => Ok(connection),
                None => connect(pool).await,
            };
            match connection {
                Ok(mut connection) => match try_lock(&mut connection, name).await {
                    Ok(true) => return Lease::Postgres(connection),
                    Ok(false) => waiting = Some(connection),
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), lease = name, "cannot take the lease; will retry")
                    }
                },
                Err(error) => {
                    let error = error_chain(&error);
                    tracing::warn!(%error, lease = name, "cannot connect to take the lease; will retry")
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// False once the lease's connection is gone, and with it the lock.
    pub async fn is_held(&mut self) -> bool {
        match self {
            Lease::Postgres(connection) => sqlx::query("SELECT 1").execute(connection).await.is_ok(),
            // A file lock can't be lost while its file is open.
            Lease::Sqlite(_) => true,
        }
    }
}

/// The lease file's lock, waited for as a PostgreSQL standby waits.
async fn acquire_file(pool: &sqlx::SqlitePool, name: &str) -> Lease {
    let database = pool.connect_options().get_filename().to_path_buf();
    if database.as_os_str().is_empty() || database.as_os_str() == ":memory:" {
        return Lease::Sqlite(None);
    }
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut path = database.into_os_string();
    path.push(format!(".lease-{safe}"));
    loop {
        let opened = open_private(&path);
        match opened {
            Ok(file) => match file.try_lock() {
                Ok(()) => return Lease::Sqlite(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(error)) => {
                    tracing::warn!(%error, lease = name, "cannot lock the lease file; will retry")
                }
            },
            Err(error) => tracing::warn!(%error, lease = name, "cannot open the lease file; will retry"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The lease file, private like every other file of the data directory
/// (narrowed too when an older start left it readable).
fn open_private(path: &std::ffi::OsStr) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

/// A connection of its own, with the pool's settings. If this process
/// vanishes without closing the socket (a partition, a frozen host), the
/// server finds out within a minute and frees the lock.
async fn connect(pool: &sqlx::PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
    for setting in ["SET tcp_keepalives_idle = 30", "SET tcp_keepalives_interval = 10", "SET tcp_keepalives_count = 3"]
    {
        sqlx::query(setting).execute(&mut connection).await?;
    }
    Ok(connection)
}

async fn try_lock(connection: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('keyledger:' || $1))")
        .bind(name)
        .fetch_one(connection)
        .await
}
