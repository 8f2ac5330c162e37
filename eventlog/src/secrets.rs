//! Server-wide secrets shared through the database.

use crate::{on_pool, Database, EventLogError};

impl Database {
    /// Returns the secret stored under `name`, storing `candidate` first if
    /// there is none. Every process on one database gets the same value,
    /// whichever of them started first.
    pub async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String, EventLogError> {
        const INSERT: &str = "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        const SELECT: &str = "SELECT value FROM server_secrets WHERE name = $1";
        let value: String = on_pool!(self, pool => {
            sqlx::query(INSERT).bind(name).bind(candidate).execute(pool).await?;
            sqlx::query_scalar(SELECT).bind(name).fetch_one(pool).await?
        });
        Ok(value)
    }

    /// The secret stored under `name`, if there is one.
    pub async fn stored_secret(&self, name: &str) -> Result<Option<String>, EventLogError> {
        const SELECT: &str = "SELECT value FROM server_secrets WHERE name = $1";
        let value: Option<String> =
            on_pool!(self, pool => sqlx::query_scalar(SELECT).bind(name).fetch_optional(pool).await)?;
        Ok(value)
    }
}
