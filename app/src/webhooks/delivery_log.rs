//! An endpoint's delivery log, drawn from both places a delivery is kept:
//! the rows of deliveries that failed, waited or were redelivered
//! (`webhook_deliveries`, with their attempts), and the batch rows of
//! deliveries that succeeded at their first attempt
//! (`webhook_delivery_batches`). Both list newest first by
//! `(createdAt, id)`; a page is the two merged, a row taking the place of
//! the batch item it was made from by a redelivery.

use std::collections::HashMap;

use chrono::Utc;
use keyledger_eventlog::{on_pool, write_turn};
use serde_json::{json, Value};

use super::dispatched::{item_id, parse_item_id, BatchItem, LoggedAttempt};
use super::store::{announce_unclaimed, timestamp, DeliveryFilter, Redelivery, WebhookError, WebhookStore};

/// Batch rows read at a time while a page is filled.
const BATCHES_PER_READ: i64 = 32;

/// Where a page starts: the `(createdAt, id)` of the delivery it follows.
type Position = (String, String);

fn sort_key(delivery: &Value) -> (&str, &str) {
    (delivery["createdAt"].as_str().unwrap_or_default(), delivery["id"].as_str().unwrap_or_default())
}

impl WebhookStore {
    /// A page of an endpoint's deliveries, newest first, each with its
    /// attempts.
    pub async fn deliveries(&self, endpoint_id: &str, filter: &DeliveryFilter) -> Result<Vec<Value>, WebhookError> {
        let after = match &filter.after {
            Some(after) => match self.position_of(endpoint_id, after).await? {
                Some(position) => Some(position),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        // (whether it has a row, the delivery): a row takes the place of
        // the batch item it was made from by a redelivery.
        let mut page: Vec<(bool, Value)> =
            self.row_deliveries(endpoint_id, filter, after.as_ref()).await?.into_iter().map(|d| (true, d)).collect();
        if filter.status.as_deref().is_none_or(|status| status == "succeeded") {
            let items = self.batch_deliveries(endpoint_id, filter, after.as_ref()).await?;
            page.extend(items.into_iter().map(|d| (false, d)));
        }
        // Newest first, a row before the item it replaces; then one of each.
        page.sort_by(|(a_row, a), (b_row, b)| sort_key(b).cmp(&sort_key(a)).then_with(|| b_row.cmp(a_row)));
        page.dedup_by(|(_, later), (_, earlier)| later["id"] == earlier["id"]);
        page.truncate(usize::try_from(filter.limit).unwrap_or(0));
        let page = page.into_iter().map(|(_, delivery)| delivery).collect();
        Ok(page)
    }

    /// The `(createdAt, id)` of one of the endpoint's deliveries.
    async fn position_of(&self, endpoint_id: &str, id: &str) -> Result<Option<Position>, WebhookError> {
        const ROW: &str = "SELECT created_at FROM webhook_deliveries WHERE endpoint_id = $1 AND id = $2";
        let created: Option<String> =
            on_pool!(&self.db, pool => sqlx::query_scalar(ROW).bind(endpoint_id).bind(id).fetch_optional(pool).await)?;
        if let Some(created) = created {
            return Ok(Some((created, id.to_owned())));
        }
        let Some((batch, index)) = parse_item_id(id) else { return Ok(None) };
        Ok(self.batch_item(endpoint_id, batch, index).await?.map(|(created, _)| (created, id.to_owned())))
    }

    /// Item `index` of one of the endpoint's batch rows, with the batch's
    /// time.
    async fn batch_item(
        &self,
        endpoint_id: &str,
        batch: i64,
        index: usize,
    ) -> Result<Option<(String, BatchItem)>, WebhookError> {
        const SQL: &str =
            "SELECT created_at, deliveries FROM webhook_delivery_batches WHERE id = $1 AND endpoint_id = $2";
        let row: Option<(String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(batch).bind(endpoint_id).fetch_optional(pool).await)?;
        Ok(row.and_then(|(created, items)| {
            let mut items: Vec<BatchItem> = serde_json::from_str(&items).ok()?;
            (index < items.len()).then(|| (created, items.swap_remove(index)))
        }))
    }

    /// Up to a page of the deliveries that have rows of their own.
    async fn row_deliveries(
        &self,
        endpoint_id: &str,
        filter: &DeliveryFilter,
        after: Option<&Position>,
    ) -> Result<Vec<Value>, WebhookError> {
        let mut sql = "SELECT id, event_id, event_type, status, attempts, next_attempt_at, created_at, updated_at,
                              first_attempt
                         FROM webhook_deliveries WHERE endpoint_id = $1
                          AND ($2 = '' OR status = $2) AND ($3 = '' OR event_type = $3)"
            .to_owned();
        if after.is_some() {
            sql.push_str(" AND (created_at, id) < ($4, $5)");
        } else {
            sql.push_str(" AND $4 = '' AND $5 = ''");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT $6");
        type Row = (String, String, String, String, i64, String, String, String, Option<String>);
        let (after_at, after_id) = after.map_or(("", ""), |(at, id)| (at.as_str(), id.as_str()));
        let rows: Vec<Row> = on_pool!(&self.db, pool => sqlx::query_as(&sql)
            .bind(endpoint_id)
            .bind(filter.status.as_deref().unwrap_or_default())
            .bind(filter.event.as_deref().unwrap_or_default())
            .bind(after_at)
            .bind(after_id)
            .bind(filter.limit)
            .fetch_all(pool).await)?;
        let ids: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
        let mut later = self.later_attempts(&ids).await?;
        let mut page = Vec::with_capacity(rows.len());
        for (id, event_id, event_type, status, attempts, next_attempt_at, created_at, updated_at, first) in rows {
            // The first attempt is in the row (a failure since 0030) or,
            // for older rows, among the rest.
            let first = first.and_then(|first| match serde_json::from_str::<LoggedAttempt>(&first) {
                Ok(first) => Some(first),
                Err(error) => {
                    tracing::error!(delivery = %id, %error, "a webhook delivery's first attempt does not parse; left out of the log");
                    None
                }
            });
            let tries: Vec<LoggedAttempt> = first.into_iter().chain(later.remove(&id).unwrap_or_default()).collect();
            let next = (status == "pending").then_some(next_attempt_at);
            page.push(json!({
                "id": id, "webhookId": event_id, "event": event_type, "status": status, "attemptCount": attempts,
                "nextAttemptAt": next, "createdAt": created_at, "updatedAt": updated_at, "attempts": tries,
            }));
        }
        Ok(page)
    }

    /// The attempts kept in `webhook_attempts` of the deliveries `ids`, in
    /// order, read in one query.
    async fn later_attempts(&self, ids: &[&str]) -> Result<HashMap<String, Vec<LoggedAttempt>>, WebhookError> {
        let mut attempts: HashMap<String, Vec<LoggedAttempt>> = HashMap::new();
        if ids.is_empty() {
            return Ok(attempts);
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT delivery_id, attempt, attempted_at, status_code, latency_ms, error, response_body
               FROM webhook_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, attempt",
            placeholders.join(", ")
        );
        type AttemptRow = (String, i64, String, Option<i64>, i64, Option<String>, String);
        let rows: Vec<AttemptRow> = on_pool!(&self.db, pool => {
            ids.iter().fold(sqlx::query_as(&sql), |query, id| query.bind(*id)).fetch_all(pool).await
        })?;
        for (delivery_id, attempt, attempted_at, status_code, latency_ms, error, response_body) in rows {
            let attempt = LoggedAttempt { attempt, attempted_at, status_code, latency_ms, error, response_body };
            attempts.entry(delivery_id).or_default().push(attempt);
        }
        Ok(attempts)
    }

    /// Up to a page of the deliveries that succeeded at their first
    /// attempt, read from the batch rows newest first until the page is
    /// full or they run out.
    async fn batch_deliveries(
        &self,
        endpoint_id: &str,
        filter: &DeliveryFilter,
        after: Option<&Position>,
    ) -> Result<Vec<Value>, WebhookError> {
        const SQL: &str = "SELECT id, created_at, deliveries FROM webhook_delivery_batches
                            WHERE endpoint_id = $1 AND ($2 = '' OR created_at <= $2)
                              AND ($3 = '' OR (created_at, id) < ($3, $4))
                            ORDER BY created_at DESC, id DESC LIMIT $5";
        let limit = usize::try_from(filter.limit).unwrap_or(0);
        let until = after.map_or("", |(at, _)| at.as_str());
        let mut page = Vec::new();
        // The last batch read: the next read continues before it.
        let mut before: Option<(String, i64)> = None;
        while page.len() < limit {
            let (before_at, before_id) = before.as_ref().map_or(("", 0), |(at, id)| (at.as_str(), *id));
            let batches: Vec<(i64, String, String)> = on_pool!(&self.db, pool => sqlx::query_as(SQL)
                .bind(endpoint_id).bind(until).bind(before_at).bind(before_id).bind(BATCHES_PER_READ)
                .fetch_all(pool).await)?;
            let read = batches.len();
            for (batch, created_at, items) in batches {
                let items: Vec<BatchItem> = match serde_json::from_str(&items) {
                    Ok(items) => items,
                    Err(error) => {
                        tracing::error!(batch, %error, "a webhook delivery batch does not parse; left out of the log");
                        Vec::new()
                    }
                };
                for (index, item) in items.into_iter().enumerate().rev() {
                    let id = item_id(batch, index);
                    let later = after.is_some_and(|(at, after_id)| {
                        (created_at.as_str(), id.as_str()) >= (at.as_str(), after_id.as_str())
                    });
                    if later || filter.event.as_deref().is_some_and(|event| event != item.event) {
                        continue;
                    }
                    let attempt = item.first_attempt();
                    page.push(json!({
                        "id": id, "webhookId": item.webhook_id, "event": item.event, "status": "succeeded",
                        "attemptCount": 1, "nextAttemptAt": null, "createdAt": created_at,
                        "updatedAt": attempt.attempted_at, "attempts": [attempt],
                    }));
                }
                before = Some((created_at, batch));
            }
            if read < BATCHES_PER_READ as usize {
                break;
            }
        }
        Ok(page)
    }

    /// Queues a delivery again, due now, with the same `webhook-id`. A
    /// delivery kept in a batch row gets a row of its own first, with the
    /// batch's id for it and its attempt.
    pub async fn redeliver(&self, endpoint_id: &str, delivery_id: &str) -> Result<Redelivery, WebhookError> {
        // Not while an attempt is under way: that attempt's outcome would
        // overwrite the redelivery, and two would be in flight at once.
        const SQL: &str = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, updated_at = $3,
                                  claimed_until = NULL
                            WHERE endpoint_id = $1 AND id = $2 AND (claimed_until IS NULL OR claimed_until < $3)";
        const EXISTS: &str = "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND id = $2";
        let now = timestamp(Utc::now());
        let _turn = write_turn(&self.db).await;
        let done = on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(endpoint_id).bind(delivery_id).bind(&now)
            .execute(pool).await.map(|d| d.rows_affected()))?;
        if done > 0 {
            announce_unclaimed();
            return Ok(Redelivery::Queued);
        }
        let exists: i64 = on_pool!(&self.db, pool => sqlx::query_scalar(EXISTS).bind(endpoint_id).bind(delivery_id).fetch_one(pool).await)?;
        if exists > 0 {
            return Ok(Redelivery::InFlight);
        }
        let Some((batch, index)) = parse_item_id(delivery_id) else { return Ok(Redelivery::NotFound) };
        let Some((created_at, item)) = self.batch_item(endpoint_id, batch, index).await? else {
            return Ok(Redelivery::NotFound);
        };
        // The row, due now, with the item's attempt as its first. A row of
        // the same event for this endpoint (sent twice, once failing) is
        // queued instead, in the same transaction.
        const INSERT: &str = "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, status, attempts, next_attempt_at, claimed_until, created_at, updated_at, first_attempt)
                              SELECT $1, $2, tenant_id, $3, $4, $5, 'pending', 1, $6, NULL, $7, $6, $8
                                FROM webhook_endpoints WHERE id = $2
                              ON CONFLICT DO NOTHING";
        const SAME_EVENT: &str = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, updated_at = $3
                                   WHERE endpoint_id = $1 AND event_id = $2 AND (claimed_until IS NULL OR claimed_until < $3)";
        let queued = on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(INSERT)
                .bind(delivery_id).bind(endpoint_id).bind(&item.webhook_id).bind(&item.event).bind(item.payload.get())
                .bind(&now).bind(&created_at).bind(item.first_attempt().to_json())
                .execute(&mut *tx).await?.rows_affected();
            let queued = if inserted > 0 {
                1
            } else {
                sqlx::query(SAME_EVENT).bind(endpoint_id).bind(&item.webhook_id).bind(&now)
                    .execute(&mut *tx).await?.rows_affected()
            };
            tx.commit().await.map(|()| queued)
        })?;
        if queued == 0 {
            return Ok(Redelivery::InFlight);
        }
        announce_unclaimed();
        Ok(Redelivery::Queued)
    }
}
