//! One active consumer per name across every process on a database.

use std::time::Duration;

use keyledger_app::client::error_chain;
use keyledger_eventlog::Database;
use sqlx::{Connection, PgConnection};

/// Held while this process is the active consumer. On PostgreSQL it is a
/// session advisory lock on a connection of its own, outside the pool (a
/// lease held for hours must not take a connection the API needs): if
/// this process dies or loses that connection, the lock goes with it and a
/// standby takes over. SQLite has one process per database file, so it is
/// always held.
pub enum Lease {
    Postgres(PgConnection),
    Sqlite,
}

const RETRY: Duration = Duration::from_millis(500);

impl Lease {
    /// Waits until this process holds the lease for `name`. A standby
    /// keeps one connection while it waits and asks on it every half
    /// second.
    pub async fn acquire(db: &Database, name: &str) -> Lease {
        let Database::Postgres(pool) = db else { return Lease::Sqlite };
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
            Lease::Sqlite => true,
        }
    }
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
