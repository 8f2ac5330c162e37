//! Recording what the dispatcher sent straight from the log.
//!
//! The log already holds every event durably, so a delivery needs no row
//! before its first attempt: the dispatcher sends a batch's deliveries,
//! then records what became of them in one transaction and only then moves
//! its cursor (the feed's checkpoint or acknowledgement). A crash before
//! that replays the batch from the cursor with the same `webhook-id`s, so
//! delivery stays at least once and duplicates are bounded by the batch.
//!
//! What a batch records:
//! - the deliveries that succeeded at their first attempt, as one row per
//!   endpoint in `webhook_delivery_batches`;
//! - a delivery whose first attempt failed, as a row of its own in
//!   `webhook_deliveries` carrying that attempt (`first_attempt`) and its
//!   retry schedule: one row a failure;
//! - a delivery whose attempt is still under way when the batch is
//!   recorded, as a row claimed by the dispatcher, which records the
//!   attempt when it ends (if the process dies first, the claim runs out
//!   and any sender tries it again);
//! - a delivery not attempted in the batch's time (its endpoint had all
//!   its attempts under way), as a row due now, for any sender.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use keyledger_eventlog::{on_pool, write_turn};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::policy::{Outcome, RetryPolicy};
use super::store::{
    announce_unclaimed, endpoint_statements, next_step, timestamp, Attempt, NewDelivery, WebhookError, WebhookStore,
    ROWS_PER_STATEMENT,
};

/// What became of a batch of deliveries the dispatcher sent.
#[derive(Debug, Default)]
pub struct Dispatched {
    /// First attempts that ended, in event order.
    pub ended: Vec<(NewDelivery, Attempt)>,
    /// Deliveries whose first attempt is still under way.
    pub under_way: Vec<NewDelivery>,
    /// Deliveries not attempted.
    pub unsent: Vec<NewDelivery>,
}

/// A delivery that succeeded at its first attempt, as its batch row keeps
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchItem {
    pub webhook_id: String,
    pub event: String,
    /// The exact body the attempt sent, for a redelivery: kept as the JSON
    /// it is, not as a string of it (which would escape every quote).
    pub payload: Box<serde_json::value::RawValue>,
    pub attempted_at: String,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub response_body: String,
}

impl BatchItem {
    /// The item's attempt, its first and only one, as the log shows it.
    pub fn first_attempt(&self) -> LoggedAttempt {
        LoggedAttempt {
            attempt: 1,
            attempted_at: self.attempted_at.clone(),
            status_code: self.status_code.map(i64::from),
            latency_ms: self.latency_ms,
            error: None,
            response_body: self.response_body.clone(),
        }
    }
}

/// A delivery's body as the JSON value it is; a body that is not JSON
/// (none is: every format writes JSON) is kept as a JSON string of it.
fn body_as_json(payload: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(payload.to_owned())
        .unwrap_or_else(|_| serde_json::value::to_raw_value(payload).expect("a string serialises"))
}

/// Marks a delivery id as naming an item of a batch row (bytes 9 and 10).
const ITEM_MARK: [u8; 2] = *b"kl";

/// An attempt as the delivery log shows it, and as a delivery's row keeps
/// its first attempt (`first_attempt`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoggedAttempt {
    pub attempt: i64,
    pub attempted_at: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_body: String,
}

impl LoggedAttempt {
    /// Attempt `number` of a delivery, as `attempt` came to.
    pub fn of(number: i64, attempt: &Attempt) -> Self {
        LoggedAttempt {
            attempt: number,
            attempted_at: timestamp(attempt.at),
            status_code: attempt.status_code.map(i64::from),
            latency_ms: i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX),
            error: attempt.error.clone(),
            response_body: attempt.response_body.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an attempt serialises")
    }
}

/// The delivery id of item `index` of batch `batch`: a UUID (version 8,
/// which random ids never have) holding both, so the delivery log and a
/// redelivery find the item without an index of their own.
pub(super) fn item_id(batch: i64, index: usize) -> String {
    let batch = (batch as u64).to_be_bytes();
    let index = (index as u32).to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&batch[2..]);
    bytes[6] = 0x80; // version 8
    bytes[8] = 0x80; // the RFC 9562 variant
    bytes[9..11].copy_from_slice(&ITEM_MARK);
    bytes[12..].copy_from_slice(&index);
    Uuid::from_bytes(bytes).to_string()
}

/// The batch and index an item's delivery id names; None for any other id.
pub(super) fn parse_item_id(id: &str) -> Option<(i64, usize)> {
    let bytes = *Uuid::parse_str(id).ok()?.as_bytes();
    if bytes[6] != 0x80 || bytes[7] != 0 || bytes[8] != 0x80 || bytes[9..11] != ITEM_MARK || bytes[11] != 0 {
        return None;
    }
    let mut batch = [0u8; 8];
    batch[2..].copy_from_slice(&bytes[..6]);
    let index = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    Some((i64::from_be_bytes(batch), index as usize))
}

/// A row of `webhook_deliveries` a dispatched batch writes.
struct Row<'a> {
    id: String,
    delivery: &'a NewDelivery,
    status: &'static str,
    attempts: i64,
    next_attempt_at: String,
    claimed_until: Option<&'a str>,
    created_at: String,
    updated_at: String,
    /// Its first attempt, when it failed, as `first_attempt` keeps it.
    first_attempt: Option<String>,
}

impl WebhookStore {
    /// Records a dispatched batch in one transaction (see the module's
    /// documentation), with what the ended attempts do to their endpoints.
    /// Answers the delivery id and claim of each delivery under way, in
    /// order; None for one recorded before (a batch handed over again),
    /// whose attempt is not this batch's to record.
    pub async fn record_dispatched(
        &self,
        dispatched: &Dispatched,
        lease: Duration,
        policy: &RetryPolicy,
    ) -> Result<Vec<Option<(String, String)>>, WebhookError> {
        let now = Utc::now();
        let created_at = timestamp(now);
        let claim = timestamp(now + chrono::Duration::from_std(lease).unwrap_or_default());
        let mut batches: Vec<(&str, Vec<BatchItem>)> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        // A microsecond apart, so the log lists a batch's rows in the
        // order of their events.
        let stamp = |n: usize| timestamp(now + chrono::Duration::microseconds(n as i64));
        for (delivery, attempt) in &dispatched.ended {
            if let Outcome::Delivered = attempt.outcome {
                let item = BatchItem {
                    webhook_id: delivery.event_id.clone(),
                    event: delivery.event_type.clone(),
                    payload: body_as_json(&delivery.payload),
                    attempted_at: timestamp(attempt.at),
                    status_code: attempt.status_code,
                    latency_ms: i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX),
                    response_body: attempt.response_body.clone(),
                };
                match batches.iter_mut().find(|(endpoint, _)| *endpoint == delivery.endpoint_id) {
                    Some((_, items)) => items.push(item),
                    None => batches.push((&delivery.endpoint_id, vec![item])),
                }
                continue;
            }
            let (status, next_attempt_at) = next_step(0, attempt, policy);
            rows.push(Row {
                id: Uuid::new_v4().to_string(),
                delivery,
                status,
                attempts: 1,
                next_attempt_at,
                claimed_until: None,
                created_at: stamp(rows.len()),
                updated_at: timestamp(attempt.at),
                first_attempt: Some(LoggedAttempt::of(1, attempt).to_json()),
            });
        }
        let under_way_from = rows.len();
        for (delivery, claimed_until) in dispatched
            .under_way
            .iter()
            .map(|delivery| (delivery, Some(claim.as_str())))
            .chain(dispatched.unsent.iter().map(|delivery| (delivery, None)))
        {
            let at = stamp(rows.len());
            rows.push(Row {
                id: Uuid::new_v4().to_string(),
                delivery,
                status: "pending",
                attempts: 0,
                next_attempt_at: created_at.clone(),
                claimed_until,
                created_at: at.clone(),
                updated_at: at,
                first_attempt: None,
            });
        }
        let batches: Vec<(&str, String)> = batches
            .into_iter()
            .map(|(endpoint, items)| (endpoint, serde_json::to_string(&items).expect("batch items serialise")))
            .collect();
        let endpoints = endpoint_statements(
            dispatched.ended.iter().map(|(delivery, attempt)| (delivery.endpoint_id.as_str(), attempt)),
            policy,
        );

        let _turn = write_turn(&self.db).await;
        let inserted: HashSet<String> = on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            if !batches.is_empty() {
                let mut insert =
                    sqlx::QueryBuilder::new("INSERT INTO webhook_delivery_batches (endpoint_id, created_at, deliveries) ");
                insert.push_values(&batches, |mut values, (endpoint, items)| {
                    values.push_bind(*endpoint).push_bind(&created_at).push_bind(items);
                });
                insert.build().execute(&mut *tx).await?;
            }
            let mut inserted: HashSet<String> = HashSet::new();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, status, attempts, next_attempt_at, claimed_until, created_at, updated_at, first_attempt) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    let d = row.delivery;
                    values.push_bind(&row.id).push_bind(&d.endpoint_id).push_bind(&d.tenant_id).push_bind(&d.event_id)
                        .push_bind(&d.event_type).push_bind(&d.payload).push_bind(row.status).push_bind(row.attempts)
                        .push_bind(&row.next_attempt_at).push_bind(row.claimed_until).push_bind(&row.created_at)
                        .push_bind(&row.updated_at).push_bind(&row.first_attempt);
                });
                insert.push(" ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING id");
                let ids: Vec<String> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
                inserted.extend(ids);
            }
            for (sql, values) in &endpoints {
                values.iter().fold(sqlx::query(sql), |query, value| query.bind(value.as_str())).execute(&mut *tx).await?;
            }
            tx.commit().await.map(|()| inserted)
        })?;
        if !dispatched.unsent.is_empty() {
            announce_unclaimed();
        }
        Ok(rows[under_way_from..under_way_from + dispatched.under_way.len()]
            .iter()
            .map(|row| inserted.contains(&row.id).then(|| (row.id.clone(), claim.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_id_names_its_batch_and_index_and_no_random_id_is_one() {
        for (batch, index) in [(1, 0), (42, 7), ((1 << 48) - 1, 999), (123_456_789, u32::MAX as usize)] {
            let id = item_id(batch, index);
            assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 8, "{id}");
            assert_eq!(parse_item_id(&id), Some((batch, index)));
        }
        for _ in 0..1000 {
            assert_eq!(parse_item_id(&Uuid::new_v4().to_string()), None);
        }
        // Items of one batch list in index order as text.
        assert!(item_id(5, 9) < item_id(5, 10));
    }
}
