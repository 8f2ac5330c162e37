//! Per-tenant serial numbers for licenses and devices, beside their UUIDs,
//! for clients that parse integer ids (seed 003).
//!
//! Each process reserves a block of numbers from `tenant_serials` and
//! hands them out from memory, so an activation costs a database round
//! trip only once per block. Numbers are unique within a tenant and kind;
//! they rise within one process, not across processes, and a process that
//! stops leaves the rest of its block unused.

use std::collections::HashMap;
use std::sync::Mutex;

use keyledger_eventlog::{on_pool, Database};

/// Numbers a process reserves at a time.
const BLOCK: i64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SerialKind {
    License,
    Device,
    Customer,
    Lead,
}

impl SerialKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::License => "license",
            Self::Device => "device",
            Self::Customer => "customer",
            Self::Lead => "lead",
        }
    }
}

/// The numbers of a reserved block not handed out yet: `next..=last`.
#[derive(Debug, Clone, Copy)]
struct Block {
    next: i64,
    last: i64,
}

#[derive(Debug)]
pub struct Serials {
    db: Database,
    blocks: Mutex<HashMap<(String, SerialKind), Block>>,
    /// One reservation at a time: callers that find a block used up wait
    /// for the one reserving, instead of each reserving a block of its
    /// own on the same row.
    refill: tokio::sync::Mutex<()>,
}

impl Serials {
    pub fn new(db: Database) -> Self {
        Self { db, blocks: Mutex::default(), refill: tokio::sync::Mutex::new(()) }
    }

    /// The tenant's next number of this kind.
    pub async fn next(&self, tenant_id: &str, kind: SerialKind) -> Result<i64, sqlx::Error> {
        if let Some(number) = self.take(tenant_id, kind) {
            return Ok(number);
        }
        let _refill = self.refill.lock().await;
        // Another caller may have reserved a block while this one waited.
        if let Some(number) = self.take(tenant_id, kind) {
            return Ok(number);
        }
        const SQL: &str = "INSERT INTO tenant_serials (tenant_id, kind, next_number) VALUES ($1, $2, $3)
            ON CONFLICT (tenant_id, kind) DO UPDATE SET next_number = tenant_serials.next_number + $3
            RETURNING next_number";
        let last: i64 = on_pool!(&self.db, pool => sqlx::query_scalar(SQL)
            .bind(tenant_id)
            .bind(kind.as_str())
            .bind(BLOCK)
            .fetch_one(pool)
            .await)?;
        let first = last - BLOCK + 1;
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        blocks.insert((tenant_id.to_owned(), kind), Block { next: first + 1, last });
        Ok(first)
    }

    fn take(&self, tenant_id: &str, kind: SerialKind) -> Option<i64> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        let block = blocks.get_mut(&(tenant_id.to_owned(), kind))?;
        if block.next > block.last {
            return None;
        }
        block.next += 1;
        Some(block.next - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn numbers_are_unique_per_tenant_and_kind_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&format!("sqlite://{}/t.db", dir.path().display()), 4).await.unwrap();
        db.migrate().await.unwrap();
        let (a, b) = (Serials::new(db.clone()), Serials::new(db.clone()));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            assert!(seen.insert(a.next("t1", SerialKind::Device).await.unwrap()));
            assert!(seen.insert(b.next("t1", SerialKind::Device).await.unwrap()));
        }
        assert_eq!(a.next("t1", SerialKind::License).await.unwrap(), 1, "each kind counts on its own");
        assert_eq!(a.next("t2", SerialKind::Device).await.unwrap(), 1, "each tenant counts on its own");
        assert_eq!(a.next("t2", SerialKind::Device).await.unwrap(), 2);
    }
}
