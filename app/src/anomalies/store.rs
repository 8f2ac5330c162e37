//! Where anomalies are read: each tenant's settings, and the table of
//! anomalies the log holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use keyledger_eventlog::{on_pool, write_turn, Database};
use serde_json::Value;

use super::settings::AnomalySettings;
use crate::webhooks::timestamp;

#[derive(Debug, thiserror::Error)]
pub enum AnomalyStoreError {
    #[error("anomaly store: a query failed")]
    Database(#[from] sqlx::Error),
    #[error("the stored anomaly settings of tenant {tenant_id} do not read")]
    Settings {
        tenant_id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One anomaly as the table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub id: String,
    pub tenant_id: String,
    pub license_id: String,
    pub kind: String,
    /// The event's evidence, as the event holds it.
    pub evidence: Value,
    pub detected_at: String,
    pub event_id: String,
    pub position: i64,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
}

/// Which anomalies a list shows.
#[derive(Debug, Default)]
pub struct AnomalyFilter {
    pub kind: Option<String>,
    pub license_id: Option<String>,
    pub resolved: Option<bool>,
    /// Anomalies older than this one (by id), for the next page.
    pub before: Option<String>,
    pub limit: i64,
}

/// Seed 003's anomaly statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnomalyStats {
    pub total: i64,
    pub unresolved: i64,
    pub by_type: BTreeMap<String, i64>,
}

/// A resolution as the log recorded it.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub anomaly_id: String,
    pub resolved_at: String,
    pub resolved_by: Option<String>,
    pub note: Option<String>,
}

type AnomalyRow =
    (String, String, String, String, String, String, String, i64, Option<String>, Option<String>, Option<String>);
const COLUMNS: &str = "id, tenant_id, license_id, kind, evidence, detected_at, event_id, position, resolved_at, resolved_by, resolution_note";

fn anomaly(row: AnomalyRow) -> Anomaly {
    let (
        id,
        tenant_id,
        license_id,
        kind,
        evidence,
        detected_at,
        event_id,
        position,
        resolved_at,
        resolved_by,
        resolution_note,
    ) = row;
    Anomaly {
        id,
        tenant_id,
        license_id,
        kind,
        evidence: serde_json::from_str(&evidence).unwrap_or(Value::Null),
        detected_at,
        event_id,
        position,
        resolved_at,
        resolved_by,
        resolution_note,
    }
}

#[derive(Clone)]
pub struct AnomalyStore {
    db: Database,
}

impl AnomalyStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The tenant's settings: the defaults until it changes them.
    pub async fn settings(&self, tenant_id: &str) -> Result<AnomalySettings, AnomalyStoreError> {
        const SQL: &str = "SELECT settings FROM anomaly_settings WHERE tenant_id = $1";
        let stored: Option<String> =
            on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(tenant_id).fetch_optional(pool).await)?;
        match stored {
            None => Ok(AnomalySettings::default()),
            Some(json) => serde_json::from_str(&json)
                .map_err(|source| AnomalyStoreError::Settings { tenant_id: tenant_id.to_owned(), source }),
        }
    }

    /// Changes the tenant's settings with `change`, which sees them as
    /// they are and answers them as they should be (or why not), in one
    /// transaction that holds the tenant's row: two changes at once are
    /// applied one after the other, neither lost.
    pub async fn update_settings<E>(
        &self,
        tenant_id: &str,
        change: impl FnOnce(&AnomalySettings) -> Result<AnomalySettings, E>,
    ) -> Result<Result<AnomalySettings, E>, AnomalyStoreError> {
        const ENSURE: &str = "INSERT INTO anomaly_settings (tenant_id, settings, updated_at) VALUES ($1, $2, $3)
                              ON CONFLICT (tenant_id) DO NOTHING";
        const SAVE: &str = "UPDATE anomaly_settings SET settings = $2, updated_at = $3 WHERE tenant_id = $1";
        let defaults = serde_json::to_string(&AnomalySettings::default()).expect("settings serialise");
        let now = timestamp(Utc::now());
        let read = |json: String| {
            serde_json::from_str::<AnomalySettings>(&json)
                .map_err(|source| AnomalyStoreError::Settings { tenant_id: tenant_id.to_owned(), source })
        };
        // On PostgreSQL the row is locked until the change commits; SQLite
        // has one writer at a time already (the write turn).
        let select = match &self.db {
            Database::Postgres(_) => "SELECT settings FROM anomaly_settings WHERE tenant_id = $1 FOR UPDATE",
            Database::Sqlite(_) => "SELECT settings FROM anomaly_settings WHERE tenant_id = $1",
        };
        let _turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(ENSURE).bind(tenant_id).bind(&defaults).bind(&now).execute(&mut *tx).await?;
            let current: String = sqlx::query_scalar(select).bind(tenant_id).fetch_one(&mut *tx).await?;
            let changed = match change(&read(current)?) {
                Ok(changed) => changed,
                Err(refused) => return Ok(Err(refused)),
            };
            let json = serde_json::to_string(&changed).expect("settings serialise");
            sqlx::query(SAVE).bind(tenant_id).bind(&json).bind(&now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Ok(changed))
        })
    }

    /// Adds detected anomalies; one already present is left as it is, so
    /// an event read twice is recorded once.
    pub async fn record_detected(&self, anomalies: &[Anomaly]) -> Result<(), AnomalyStoreError> {
        if anomalies.is_empty() {
            return Ok(());
        }
        const SQL: &str =
            "INSERT INTO anomalies (id, tenant_id, license_id, kind, evidence, detected_at, event_id, position)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING";
        let _turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for a in anomalies {
                sqlx::query(SQL)
                    .bind(&a.id).bind(&a.tenant_id).bind(&a.license_id).bind(&a.kind)
                    .bind(a.evidence.to_string()).bind(&a.detected_at).bind(&a.event_id).bind(a.position)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// Marks anomalies resolved; the first resolution recorded stands.
    pub async fn record_resolved(&self, resolutions: &[Resolution]) -> Result<(), AnomalyStoreError> {
        if resolutions.is_empty() {
            return Ok(());
        }
        const SQL: &str = "UPDATE anomalies SET resolved_at = $2, resolved_by = $3, resolution_note = $4
                           WHERE id = $1 AND resolved_at IS NULL";
        let _turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for r in resolutions {
                sqlx::query(SQL)
                    .bind(&r.anomaly_id).bind(&r.resolved_at).bind(&r.resolved_by).bind(&r.note)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// One anomaly; `tenant_id` None (the operator) sees every tenant's.
    pub async fn get(&self, tenant_id: Option<&str>, id: &str) -> Result<Option<Anomaly>, AnomalyStoreError> {
        let sql = format!("SELECT {COLUMNS} FROM anomalies WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)");
        let row: Option<AnomalyRow> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(id).bind(tenant_id).fetch_optional(pool).await)?;
        Ok(row.map(anomaly))
    }

    /// Newest first.
    pub async fn list(
        &self,
        tenant_id: Option<&str>,
        filter: &AnomalyFilter,
    ) -> Result<Vec<Anomaly>, AnomalyStoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM anomalies
              WHERE ($1 IS NULL OR tenant_id = $1)
                AND ($2 IS NULL OR kind = $2)
                AND ($3 IS NULL OR license_id = $3)
                AND ($4 IS NULL OR (resolved_at IS NOT NULL) = $4)
                AND ($5 IS NULL OR position < (SELECT position FROM anomalies WHERE id = $5 AND ($1 IS NULL OR tenant_id = $1)))
              ORDER BY position DESC LIMIT $6"
        );
        let rows: Vec<AnomalyRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(tenant_id).bind(&filter.kind).bind(&filter.license_id).bind(filter.resolved)
            .bind(&filter.before).bind(filter.limit)
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(anomaly).collect())
    }

    /// Counts of the tenant's anomalies (every tenant's for None).
    pub async fn stats(&self, tenant_id: Option<&str>) -> Result<AnomalyStats, AnomalyStoreError> {
        const SQL: &str = "SELECT kind, COUNT(*), COUNT(*) - COUNT(resolved_at) FROM anomalies
                            WHERE ($1 IS NULL OR tenant_id = $1) GROUP BY kind";
        let rows: Vec<(String, i64, i64)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(tenant_id).fetch_all(pool).await)?;
        let mut stats = AnomalyStats::default();
        for (kind, total, unresolved) in rows {
            stats.total += total;
            stats.unresolved += unresolved;
            stats.by_type.insert(kind, total);
        }
        Ok(stats)
    }
}

/// Tenants' settings as recently read, for the paths that need them on
/// every call (validate counts calls against them). A change made in this
/// process is seen at once; one made by another process within `ttl`.
pub struct SettingsCache {
    store: AnomalyStore,
    ttl: Duration,
    cached: RwLock<HashMap<String, (Instant, Arc<AnomalySettings>)>>,
}

impl SettingsCache {
    pub fn new(store: AnomalyStore, ttl: Duration) -> Self {
        Self { store, ttl, cached: RwLock::new(HashMap::new()) }
    }

    pub fn store(&self) -> &AnomalyStore {
        &self.store
    }

    pub async fn get(&self, tenant_id: &str) -> Result<Arc<AnomalySettings>, AnomalyStoreError> {
        if let Some((read_at, settings)) = self.cached.read().unwrap_or_else(|p| p.into_inner()).get(tenant_id) {
            if read_at.elapsed() < self.ttl {
                return Ok(settings.clone());
            }
        }
        let settings = Arc::new(self.store.settings(tenant_id).await?);
        self.cached
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_owned(), (Instant::now(), settings.clone()));
        Ok(settings)
    }

    /// Changes the settings (see [`AnomalyStore::update_settings`]) and
    /// caches what they became.
    pub async fn update<E>(
        &self,
        tenant_id: &str,
        change: impl FnOnce(&AnomalySettings) -> Result<AnomalySettings, E>,
    ) -> Result<Result<AnomalySettings, E>, AnomalyStoreError> {
        let outcome = self.store.update_settings(tenant_id, change).await?;
        if let Ok(settings) = &outcome {
            self.cached
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tenant_id.to_owned(), (Instant::now(), Arc::new(settings.clone())));
        }
        Ok(outcome)
    }
}
