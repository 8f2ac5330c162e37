//! Products: commands decided on the product's state in `product_view`,
//! their events appended to the product's own chain in the log together
//! with the row that reflects them, in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_domain::{Product, ProductCommand, ProductError, EVENT_VERSION};
use keyledger_eventlog::{
    on_pool, AppendError, Database, EventLog, EventLogError, NewEvent, ProjectedRow, SqlValue, PRODUCT_AGGREGATE,
};
use serde_json::Value;

/// How often a command is decided again after another writer changed the
/// product first.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ProductCommandError {
    #[error(transparent)]
    Refused(#[from] ProductError),
    #[error("another live product of the tenant has this code")]
    CodeTaken,
    #[error("the product kept changing under this command")]
    Contended,
    #[error("product store: {0}")]
    Store(String),
}

impl From<sqlx::Error> for ProductCommandError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.to_string())
    }
}

impl From<EventLogError> for ProductCommandError {
    fn from(error: EventLogError) -> Self {
        Self::Store(error.to_string())
    }
}

/// A product as its row holds it: its state, the sequence of its last
/// event and that event's chain hash.
#[derive(Debug, Clone)]
pub struct StoredProduct {
    pub product: Product,
    pub version: i64,
    pub last_hash: String,
}

#[derive(Debug, Clone)]
pub struct ProductStore {
    db: Database,
    log: EventLog,
}

const INSERT_INTO: &str =
    "INSERT INTO product_view (product_id, tenant_id, code, created_at, deleted, version, last_hash, state)";
const ON_CONFLICT: &str = "ON CONFLICT (product_id) DO UPDATE
   SET code = excluded.code, deleted = excluded.deleted, version = excluded.version,
       last_hash = excluded.last_hash, state = excluded.state
 WHERE product_view.version < excluded.version";
const COLUMNS: &str = "SELECT state, version, last_hash FROM product_view";

impl ProductStore {
    pub fn new(db: Database) -> Self {
        Self { log: EventLog::new(db.clone()), db }
    }

    /// The product with this id, deleted ones included.
    pub async fn get(&self, product_id: &str) -> Result<Option<StoredProduct>, ProductCommandError> {
        let sql = format!("{COLUMNS} WHERE product_id = $1");
        let row: Option<(String, i64, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(product_id).fetch_optional(pool).await)?;
        row.map(decode).transpose()
    }

    /// A tenant's live products, oldest first, `limit` after product `after`.
    pub async fn list(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredProduct>, ProductCommandError> {
        let sql = format!(
            "{COLUMNS} WHERE tenant_id = $1 AND deleted = 0
               AND ($2 = '' OR (created_at, product_id) > (SELECT created_at, product_id FROM product_view WHERE product_id = $2))
             ORDER BY created_at, product_id LIMIT $3"
        );
        let rows: Vec<(String, i64, String)> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(after.unwrap_or_default())
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(decode).collect()
    }

    /// Decides `command` on the product's latest state and appends what it
    /// decided with the product's new row; returns the product after it.
    /// `build` makes the command afresh for each attempt.
    pub async fn execute(
        &self,
        product_id: &str,
        build: impl Fn() -> ProductCommand,
        metadata: &HashMap<String, String>,
    ) -> Result<Product, ProductCommandError> {
        let metadata = serde_json::to_value(metadata).map_err(|e| ProductCommandError::Store(e.to_string()))?;
        for _ in 0..ATTEMPTS {
            let current = self.get(product_id).await?;
            let (mut product, version, last_hash) = match current {
                Some(stored) => (stored.product, stored.version, stored.last_hash),
                None => (Product::default(), 0, String::new()),
            };
            let events = product.decide(build())?;
            if events.is_empty() {
                return Ok(product);
            }
            let payloads: Vec<(i64, &'static str, Value)> = events
                .iter()
                .enumerate()
                .map(|(n, event)| {
                    let payload = serde_json::to_value(event).map_err(|e| ProductCommandError::Store(e.to_string()))?;
                    Ok((version + n as i64 + 1, event.event_type(), payload))
                })
                .collect::<Result<_, ProductCommandError>>()?;
            for event in events {
                product.apply(event);
            }
            let new_version = version + payloads.len() as i64;
            let new_events: Vec<NewEvent<'_>> = payloads
                .iter()
                .map(|(sequence, event_type, payload)| NewEvent {
                    aggregate_type: PRODUCT_AGGREGATE,
                    aggregate_id: product_id,
                    sequence: *sequence,
                    event_type,
                    event_version: EVENT_VERSION,
                    payload,
                    metadata: &metadata,
                })
                .collect();
            let row = projected_row(&product, new_version)?;
            match self.log.append_after(&new_events, &last_hash, Some(&row)).await {
                Ok(_) => return Ok(product),
                Err(AppendError::Conflict) => continue,
                Err(AppendError::Database(sqlx::Error::Database(error))) if error.is_unique_violation() => {
                    return Err(ProductCommandError::CodeTaken)
                }
                Err(AppendError::Database(error)) => return Err(error.into()),
            }
        }
        Err(ProductCommandError::Contended)
    }

    /// The product's history, as the log's envelopes.
    pub async fn history(&self, product_id: &str, after: i64, limit: i64) -> Result<Vec<Value>, ProductCommandError> {
        let events = self.log.aggregate_history(PRODUCT_AGGREGATE, product_id, after, limit).await?;
        Ok(events.iter().map(|event| event.envelope()).collect())
    }
}

fn decode((state, version, last_hash): (String, i64, String)) -> Result<StoredProduct, ProductCommandError> {
    let product = serde_json::from_str(&state).map_err(|e| ProductCommandError::Store(e.to_string()))?;
    Ok(StoredProduct { product, version, last_hash })
}

fn projected_row(product: &Product, version: i64) -> Result<ProjectedRow, ProductCommandError> {
    let state = serde_json::to_string(product).map_err(|e| ProductCommandError::Store(e.to_string()))?;
    let created_at = product.created_at.map(sortable).unwrap_or_default();
    Ok(ProjectedRow {
        insert_into: INSERT_INTO,
        values: vec![
            SqlValue::Text(product.id.clone()),
            SqlValue::Text(product.tenant_id.clone()),
            SqlValue::Text(product.code.clone()),
            SqlValue::Text(created_at),
            SqlValue::Int(i64::from(product.deleted)),
            SqlValue::Int(version),
            SqlValue::AppendedHash,
            SqlValue::Text(state),
        ],
        on_conflict: ON_CONFLICT.to_owned(),
    })
}

/// Fixed-width RFC 3339, so text order is time order.
fn sortable(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
