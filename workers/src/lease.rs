//! One active consumer per name across every process on a database.

use std::time::Duration;

use keyledger_eventlog::Database;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

/// Held while this process is the active consumer. On PostgreSQL it is a
/// session advisory lock on a connection of its own: if this process dies
/// or loses that connection, the lock goes with it and a standby takes
/// over. SQLite has one process per database file, so it is always held.
pub enum Lease {
    Postgres(LockConnection),
    Sqlite,
}

/// The connection holding the advisory lock. It is closed, never returned
/// to the pool, when the lease is dropped: a pooled connection would keep
/// the session, and the lock, alive with nobody using it.
pub struct LockConnection(Option<PoolConnection<Postgres>>);

impl Drop for LockConnection {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(connection.detach());
        }
    }
}

const RETRY: Duration = Duration::from_millis(500);

impl Lease {
    /// Waits until this process holds the lease for `name`.
    pub async fn acquire(db: &Database, name: &str) -> Lease {
        let Database::Postgres(pool) = db else { return Lease::Sqlite };
        loop {
            match try_lock(pool, name).await {
                Ok(Some(connection)) => return Lease::Postgres(LockConnection(Some(connection))),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, lease = name, "cannot take the lease; will retry"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// False once the lease's connection is gone, and with it the lock.
    pub async fn is_held(&mut self) -> bool {
        match self {
            Lease::Postgres(LockConnection(Some(connection))) => {
                sqlx::query("SELECT 1").execute(&mut **connection).await.is_ok()
            }
            Lease::Postgres(LockConnection(None)) => false,
            Lease::Sqlite => true,
        }
    }
}

async fn try_lock(pool: &sqlx::PgPool, name: &str) -> Result<Option<PoolConnection<Postgres>>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    // If this process vanishes without closing the socket (a partition, a
    // frozen host), the server finds out within a minute and frees the lock.
    for setting in ["SET tcp_keepalives_idle = 30", "SET tcp_keepalives_interval = 10", "SET tcp_keepalives_count = 3"]
    {
        sqlx::query(setting).execute(&mut *connection).await?;
    }
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('keyledger:' || $1))")
        .bind(name)
        .fetch_one(&mut *connection)
        .await?;
    if locked {
        Ok(Some(connection))
    } else {
        Ok(None)
    }
}
