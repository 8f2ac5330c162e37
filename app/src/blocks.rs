//! The rows behind progressive blocks, shared by every process on one
//! database: `address_blocks` (blocks earned by repeated failures on any
//! client endpoint) and `route_blocks` (blocks of one dialect route's own
//! limit). The rules that decide a block live with the rate limits in the
//! API; this is only where blocks are kept, so each process can take in
//! the blocks the others made.

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_eventlog::{on_pool, Database};

/// A block table could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the block tables could not be read or written")]
pub struct BlockStoreError(#[from] sqlx::Error);

/// An address's last block: its level (how many blocks in a row) and end.
#[derive(Debug, Clone)]
pub struct AddressBlock {
    pub level: i64,
    pub until: DateTime<Utc>,
}

/// A block of one route for one address, and the length of the next.
#[derive(Debug, Clone)]
pub struct RouteBlock {
    pub route: String,
    pub address: String,
    pub until: DateTime<Utc>,
    pub next_secs: i64,
}

#[derive(Clone)]
pub struct BlockStore {
    db: Database,
}

/// Stored as text, millisecond precision, so instants sort as text.
fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|at| at.with_timezone(&Utc))
}

impl BlockStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The address's last block, if a row is kept for it.
    pub async fn address_block(&self, address: &str) -> Result<Option<AddressBlock>, BlockStoreError> {
        const SQL: &str = "SELECT level, blocked_until FROM address_blocks WHERE address = $1";
        let row: Option<(i64, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(address).fetch_optional(pool).await)?;
        Ok(row.and_then(|(level, until)| Some(AddressBlock { level, until: instant(&until)? })))
    }

    pub async fn put_address_block(&self, address: &str, block: &AddressBlock) -> Result<(), BlockStoreError> {
        const SQL: &str = "INSERT INTO address_blocks (address, level, blocked_until) VALUES ($1, $2, $3) \
             ON CONFLICT (address) DO UPDATE SET level = excluded.level, blocked_until = excluded.blocked_until";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(address).bind(block.level).bind(text(block.until))
            .execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Every address block in force at `now`.
    pub async fn address_blocks_in_force(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, BlockStoreError> {
        const SQL: &str = "SELECT address, blocked_until FROM address_blocks WHERE blocked_until > $1";
        let rows: Vec<(String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(text(now)).fetch_all(pool).await)?;
        Ok(rows.into_iter().filter_map(|(address, until)| Some((address, instant(&until)?))).collect())
    }

    /// Forgets address blocks that ended before `before`.
    pub async fn forget_address_blocks(&self, before: DateTime<Utc>) -> Result<(), BlockStoreError> {
        const SQL: &str = "DELETE FROM address_blocks WHERE blocked_until < $1";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(text(before)).execute(pool).await.map(drop))?;
        Ok(())
    }

    pub async fn put_route_block(&self, block: &RouteBlock) -> Result<(), BlockStoreError> {
        const SQL: &str = "INSERT INTO route_blocks (route, address, blocked_until, next_secs) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (route, address) DO UPDATE SET blocked_until = excluded.blocked_until, next_secs = excluded.next_secs";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(&block.route).bind(&block.address).bind(text(block.until))
            .bind(block.next_secs).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Every route block in force at `now`.
    pub async fn route_blocks_in_force(&self, now: DateTime<Utc>) -> Result<Vec<RouteBlock>, BlockStoreError> {
        const SQL: &str = "SELECT route, address, blocked_until, next_secs FROM route_blocks WHERE blocked_until > $1";
        let rows: Vec<(String, String, String, i64)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(text(now)).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(route, address, until, next_secs)| {
                Some(RouteBlock { route, address, until: instant(&until)?, next_secs })
            })
            .collect())
    }

    /// Forgets route blocks that ended before `before`.
    pub async fn forget_route_blocks(&self, before: DateTime<Utc>) -> Result<(), BlockStoreError> {
        const SQL: &str = "DELETE FROM route_blocks WHERE blocked_until < $1";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(text(before)).execute(pool).await.map(drop))?;
        Ok(())
    }
}
