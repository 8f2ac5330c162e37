//! Snapshots of licenses, and loading a license from its snapshot and the
//! events after it.
//!
//! cqrs-es 0.5.0's own snapshot modes apply each commit's events to the
//! stored snapshot twice, so the event store runs in plain event-store mode
//! and this module stands in for them.

use cqrs_es::Aggregate;
use keyledger_domain::{License, LicenseEvent};

use crate::log::AGGREGATE_TYPE;
use crate::{on_pool, Database, EventLogError};

/// A snapshot is written whenever a license's version crosses a multiple
/// of this.
pub const SNAPSHOT_EVERY: i64 = 100;

/// Raise this whenever `License` or how events fold into it changes: older
/// snapshots would still parse but hold what the old rules made of the
/// events, so they are ignored and the license replayed.
pub const SNAPSHOT_FORMAT: i64 = 3;

/// A license loaded from the log.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub license: License,
    /// The sequence of its last event; 0 if it has none.
    pub version: i64,
    /// Its last event's chain hash; empty if it has none.
    pub last_hash: String,
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    db: Database,
}

impl Snapshots {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The license as of its last event, ready for a command: its latest
    /// snapshot plus the events after it. A missing or unreadable snapshot
    /// means a full replay.
    pub async fn load(&self, license_id: &str) -> Result<Loaded, EventLogError> {
        let (mut license, snapshot_version) = self.read(license_id).await?.unwrap_or_default();
        // From the snapshot's own event, for the hash the next one chains to.
        const EVENTS: &str = "SELECT sequence, payload, hash FROM events
                               WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 ORDER BY sequence";
        let rows: Vec<(i64, serde_json::Value, String)> = on_pool!(&self.db, pool => sqlx::query_as(EVENTS)
            .bind(AGGREGATE_TYPE)
            .bind(license_id)
            .bind(snapshot_version)
            .fetch_all(pool)
            .await)?;
        let mut version = snapshot_version;
        let mut last_hash = String::new();
        for (sequence, payload, hash) in rows {
            if sequence == snapshot_version {
                last_hash = hash;
                continue;
            }
            if sequence != version + 1 || (version > 0 && last_hash.is_empty()) {
                return Err(EventLogError::Corrupt(format!(
                    "license {license_id} jumps from event {version} to {sequence}"
                )));
            }
            let event: LicenseEvent = serde_json::from_value(payload).map_err(|source| EventLogError::Undecodable {
                what: format!("event {sequence} of license {license_id}"),
                source,
            })?;
            license.apply(event);
            version = sequence;
            last_hash = hash;
        }
        if version > 0 && last_hash.is_empty() {
            return Err(EventLogError::Corrupt(format!(
                "license {license_id} has a snapshot at {version} but no event {version}"
            )));
        }
        Ok(Loaded { license, version, last_hash })
    }

    /// Stores `license` as of `version` if that crosses a snapshot boundary
    /// since `previous_version`, and the stored one is older.
    pub async fn maybe_save(
        &self,
        license: &License,
        previous_version: i64,
        version: i64,
    ) -> Result<(), EventLogError> {
        if version / SNAPSHOT_EVERY == previous_version / SNAPSHOT_EVERY {
            return Ok(());
        }
        const UPSERT: &str = "INSERT INTO license_snapshots (license_id, version, format, state) VALUES ($1, $2, $3, $4)
                              ON CONFLICT (license_id) DO UPDATE
                                 SET version = excluded.version, format = excluded.format, state = excluded.state
                               WHERE license_snapshots.version < excluded.version OR license_snapshots.format <> excluded.format";
        let state = serde_json::to_string(license)
            .map_err(|source| EventLogError::Unencodable { what: "a license's snapshot", source })?;
        let _turn = crate::write_turn(&self.db).await;
        on_pool!(&self.db, pool => sqlx::query(UPSERT)
            .bind(license.id.as_str())
            .bind(version)
            .bind(SNAPSHOT_FORMAT)
            .bind(state)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    async fn read(&self, license_id: &str) -> Result<Option<(License, i64)>, EventLogError> {
        const SQL: &str = "SELECT version, state FROM license_snapshots WHERE license_id = $1 AND format = $2";
        let row: Option<(i64, String)> = on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(license_id).bind(SNAPSHOT_FORMAT).fetch_optional(pool).await)?;
        Ok(row.and_then(|(version, state)| match serde_json::from_str(&state) {
            Ok(license) => Some((license, version)),
            Err(error) => {
                // The state's shape changed since it was written: replay.
                tracing::warn!(license_id, %error, "ignoring an unreadable snapshot");
                None
            }
        }))
    }
}
