//! Webhook endpoints and the durable queue of the deliveries that have
//! rows: those whose first attempt failed, outlived its batch or was not
//! made (see [`super::dispatched`]), redeliveries and test events.
//!
//! Attempts claim due rows for a lease (`claimed_until`), so several
//! processes on one database share the work and no attempt is sent by two
//! at once (on PostgreSQL the claim skips rows another claim holds
//! locked). A process that dies mid-attempt leaves its claim to expire,
//! and the row is tried again: the guarantee is at least once, with the
//! same `webhook-id` every time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_eventlog::{on_pool, write_turn, Database};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::policy::{Outcome, RetryPolicy};
use super::signature;
use crate::client::error_chain;
use crate::master::MasterKey;

/// Changes whenever this process queued a delivery row, so the sender
/// need not wait for its next poll.
static QUEUED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

pub fn queued() -> tokio::sync::watch::Receiver<u64> {
    QUEUED.subscribe()
}

/// Counts the times this process queued delivery rows for any sender to
/// claim: a sender that found the table empty asks it again at once only
/// when this has moved.
static QUEUED_UNCLAIMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn queued_unclaimed() -> u64 {
    QUEUED_UNCLAIMED.load(std::sync::atomic::Ordering::Acquire)
}

/// Wakes this process's sender for deliveries queued unclaimed.
pub(super) fn announce_unclaimed() {
    QUEUED_UNCLAIMED.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    QUEUED.send_modify(|n| *n = n.wrapping_add(1));
}

/// Where a delivery goes and the keys that sign it.
pub type Target = (String, Vec<Vec<u8>>);

/// Rows one multi-row statement writes at most: well under both
/// backends' limits on bound parameters.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// How much of an endpoint's answer the delivery log keeps.
pub const ATTEMPT_BODY_LIMIT: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook store: a query failed")]
    Database(#[from] sqlx::Error),
    /// The sealed secret does not open, or opens to something that is not
    /// a secret; what the opening reports says no more than that, so the
    /// endpoint's id is all that is kept.
    #[error("the signing secret of webhook {endpoint_id} does not open with this process's master key")]
    Sealed { endpoint_id: String },
}

fn does_not_open(endpoint_id: &str) -> WebhookError {
    WebhookError::Sealed { endpoint_id: endpoint_id.to_owned() }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it is disabled: `manual`, `gone` (it answered 410) or
    /// `failing` (it failed for longer than the limit).
    pub disabled_reason: Option<String>,
    /// Since when every attempt failed, if the last one did.
    pub failing_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// What its deliveries look like ([`PayloadFormat`]).
    pub payload_format: PayloadFormat,
}

/// What an endpoint's deliveries look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    /// `{type, timestamp, data: <the event envelope>}`.
    #[default]
    Keyledger,
    /// The V2 License Server document's `{event, timestamp, data:
    /// {license_id, activation_id, customer_id}}`, with integer ids.
    V2Server,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Keyledger => "keyledger",
            PayloadFormat::V2Server => "v2-server",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "keyledger" => Some(PayloadFormat::Keyledger),
            "v2-server" => Some(PayloadFormat::V2Server),
            _ => None,
        }
    }
}

pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub payload_format: PayloadFormat,
}

#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub payload_format: Option<PayloadFormat>,
}

/// What asking for a redelivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    Queued,
    /// An attempt of it is under way; ask again when it is done.
    InFlight,
    NotFound,
}

/// A delivery the dispatcher records.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
}

/// An endpoint as the dispatcher sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: String,
    pub patterns: Vec<String>,
    /// When it was made, in the log's timestamp format.
    pub since: String,
    pub format: PayloadFormat,
}

/// A delivery claimed for an attempt, with what sending it needs. Not
/// `Debug`: it holds signing keys.
#[derive(Clone)]
pub struct Claimed {
    pub delivery_id: String,
    pub endpoint_id: String,
    /// The `webhook-id`.
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub url: String,
    /// The current secret's key, then the previous one's during a rotation.
    pub keys: Vec<Vec<u8>>,
    /// The claim's expiry as written: recording the attempt only counts if
    /// the row still carries it (the claim was not lost meanwhile).
    pub claim: String,
}

/// What one attempt came to, for the log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    pub response_body: String,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub event: Option<String>,
    pub after: Option<String>,
    pub limit: i64,
}

type EndpointRow = (String, String, String, String, i64, Option<String>, Option<String>, String, String, String);
const ENDPOINT_COLUMNS: &str =
    "id, url, description, events, enabled, disabled_reason, failing_since, created_at, updated_at, payload_format";

fn endpoint(row: EndpointRow) -> Endpoint {
    let (id, url, description, events, enabled, disabled_reason, failing_since, created_at, updated_at, format) = row;
    let payload_format = PayloadFormat::parse(&format).unwrap_or_default();
    Endpoint {
        id,
        url,
        description,
        events: serde_json::from_str(&events).unwrap_or_default(),
        enabled: enabled != 0,
        disabled_reason,
        failing_since,
        created_at,
        updated_at,
        payload_format,
    }
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn after(duration: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[derive(Clone)]
pub struct WebhookStore {
    pub(super) db: Database,
    master: Arc<MasterKey>,
}

impl WebhookStore {
    pub fn new(db: Database, master: Arc<MasterKey>) -> Self {
        Self { db, master }
    }

    /// The sealing context binds a secret to its endpoint: a sealed secret
    /// copied onto another endpoint's row does not open.
    fn seal(&self, endpoint_id: &str, secret: &str) -> String {
        self.master.seal(secret.as_bytes(), &format!("webhook:{endpoint_id}"))
    }

    fn open(&self, endpoint_id: &str, sealed: &str) -> Result<Vec<u8>, WebhookError> {
        let secret =
            self.master.open(sealed, &format!("webhook:{endpoint_id}")).map_err(|_| does_not_open(endpoint_id))?;
        let secret = String::from_utf8(secret).map_err(|_| does_not_open(endpoint_id))?;
        signature::key_bytes(&secret).ok_or_else(|| does_not_open(endpoint_id))
    }

    /// Creates an endpoint; returns it and its secret, which is shown once.
    /// A new endpoint and its secret; None when the tenant has `max`
    /// endpoints already (one event fans out to every endpoint, so their
    /// number is what one tenant's event costs every other tenant).
    pub async fn create(
        &self,
        tenant_id: &str,
        new: NewEndpoint,
        max: usize,
    ) -> Result<Option<(Endpoint, String)>, WebhookError> {
        let id = Uuid::new_v4().to_string();
        let secret = signature::generate();
        let now = timestamp(Utc::now());
        let events = serde_json::to_string(&new.events).expect("strings serialize");
        // The count and the insert in one statement.
        const SQL: &str = "INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, enabled, disabled_reason, secret, created_at, updated_at, payload_format)
                           SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $11
                            WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $2) < $10";
        let disabled_reason = (!new.enabled).then_some("manual");
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let inserted = on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(&id).bind(tenant_id).bind(&new.url).bind(&new.description).bind(&events)
            .bind(i64::from(new.enabled)).bind(disabled_reason).bind(self.seal(&id, &secret)).bind(&now).bind(max)
            .bind(new.payload_format.as_str())
            .execute(pool).await.map(|done| done.rows_affected()))?;
        if inserted == 0 {
            return Ok(None);
        }
        let created = self.get(tenant_id, &id).await?.expect("just inserted");
        Ok(Some((created, secret)))
    }

    /// Whether any tenant has an endpoint.
    pub async fn any_endpoint(&self) -> Result<bool, WebhookError> {
        const SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM webhook_endpoints LIMIT 1) AS one";
        let count: i64 = on_pool!(&self.db, pool => sqlx::query_scalar(SQL).fetch_one(pool).await)?;
        Ok(count > 0)
    }

    pub async fn list(&self, tenant_id: &str) -> Result<Vec<Endpoint>, WebhookError> {
        let sql =
            format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id");
        let rows: Vec<EndpointRow> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(endpoint).collect())
    }

    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<Endpoint>, WebhookError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2");
        let row: Option<EndpointRow> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(tenant_id).bind(id).fetch_optional(pool).await)?;
        Ok(row.map(endpoint))
    }

    /// Changes what `patch` names and nothing else, in one statement, so
    /// it can't undo a change the sender made meanwhile (disabling after a
    /// 410). Enabling clears why it was disabled and its failure streak,
    /// so its queued deliveries go out; disabling records `manual`.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        patch: EndpointPatch,
    ) -> Result<Option<Endpoint>, WebhookError> {
        let events = patch.events.map(|events| serde_json::to_string(&events).expect("strings serialize"));
        let enabling = match patch.enabled {
            Some(true) => "enabled = 1, disabled_reason = NULL, failing_since = NULL,",
            Some(false) => {
                "disabled_reason = CASE WHEN enabled = 1 THEN 'manual' ELSE disabled_reason END, enabled = 0,"
            }
            None => "",
        };
        let sql = format!(
            "UPDATE webhook_endpoints SET {enabling} url = COALESCE($3, url), description = COALESCE($4, description),
                    events = COALESCE($5, events), updated_at = $6, payload_format = COALESCE($7, payload_format)
              WHERE tenant_id = $1 AND id = $2"
        );
        let turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(tenant_id).bind(id).bind(patch.url).bind(patch.description).bind(events)
            .bind(timestamp(Utc::now())).bind(patch.payload_format.map(PayloadFormat::as_str))
            .execute(pool).await.map(drop))?;
        drop(turn);
        self.get(tenant_id, id).await
    }

    /// Deletes the endpoint with its queued deliveries and their log.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, WebhookError> {
        const SQL: &str = "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2";
        let done = on_pool!(&self.db, pool => sqlx::query(SQL).bind(tenant_id).bind(id).execute(pool).await.map(|d| d.rows_affected()))?;
        Ok(done > 0)
    }

    /// A new secret; the old one keeps signing too for `overlap`, so
    /// receivers can switch without missing a delivery.
    pub async fn rotate_secret(
        &self,
        tenant_id: &str,
        id: &str,
        overlap: Duration,
    ) -> Result<Option<String>, WebhookError> {
        let secret = signature::generate();
        const SQL: &str =
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $3, secret = $4, updated_at = $5
                            WHERE tenant_id = $1 AND id = $2";
        let done = on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(tenant_id).bind(id).bind(timestamp(after(overlap))).bind(self.seal(id, &secret))
            .bind(timestamp(Utc::now()))
            .execute(pool).await.map(|d| d.rows_affected()))?;
        Ok((done > 0).then_some(secret))
    }

    /// The tenant's enabled endpoints: what each subscribes to, and since
    /// when (it gets no event from before it was made).
    pub async fn subscribers(&self, tenant_id: &str) -> Result<Vec<Subscriber>, WebhookError> {
        const SQL: &str =
            "SELECT id, events, created_at, payload_format FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1";
        let rows: Vec<(String, String, String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, events, since, format)| Subscriber {
                id,
                patterns: serde_json::from_str(&events).unwrap_or_default(),
                since,
                format: PayloadFormat::parse(&format).unwrap_or_default(),
            })
            .collect())
    }

    /// The tenant's usage threshold (percent of a license's seats), read
    /// where the tenant's settings are kept; 80 for a tenant that is gone.
    pub async fn usage_threshold(&self, tenant_id: &str) -> Result<u32, WebhookError> {
        let tenancy = crate::tenancy::TenancyStore::new(self.db.clone());
        Ok(tenancy.usage_threshold(tenant_id).await?.unwrap_or(crate::tenancy::DEFAULT_USAGE_THRESHOLD))
    }

    /// A customer's per-tenant number, for payloads that show integer ids.
    pub async fn customer_number(&self, customer_id: &str) -> Result<Option<i64>, WebhookError> {
        const SQL: &str = "SELECT number FROM customer_view WHERE customer_id = $1 AND number > 0";
        let number: Option<i64> =
            on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(customer_id).fetch_optional(pool).await)?;
        Ok(number)
    }

    /// Records a delivery of `event_id` to an endpoint, due now; nothing
    /// if it is recorded already. Returns the new delivery's id.
    pub async fn enqueue(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        event_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<Option<String>, WebhookError> {
        const SQL: &str = "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, status, attempts, next_attempt_at, claimed_until, created_at, updated_at)
                           VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, NULL, $7, $7)
                           ON CONFLICT (endpoint_id, event_id) DO NOTHING";
        let id = Uuid::new_v4().to_string();
        let now = timestamp(Utc::now());
        let _turn = write_turn(&self.db).await;
        let inserted = on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(&id).bind(endpoint_id).bind(tenant_id).bind(event_id).bind(event_type).bind(payload).bind(&now)
            .execute(pool).await.map(|done| done.rows_affected()))?;
        if inserted == 0 {
            return Ok(None);
        }
        announce_unclaimed();
        Ok(Some(id))
    }

    /// Claims up to `limit` due deliveries of enabled endpoints for
    /// `lease`, oldest due first, from those waiting unclaimed (queued,
    /// handed back, or due for a retry).
    pub async fn claim_due(
        &self,
        limit: i64,
        lease: Duration,
        except: &[String],
    ) -> Result<Vec<Claimed>, WebhookError> {
        let due = "d.claimed_until IS NULL AND d.next_attempt_at <= $1";
        self.claim_where(due, "d.next_attempt_at", limit, lease, except).await
    }

    /// Claims up to `limit` deliveries whose claim ran out before their
    /// attempt was recorded (the process that held them died, or lost its
    /// database mid-attempt), oldest claim first. Their index keeps every
    /// claimed row's entry until a vacuum, so this is a heavier query than
    /// [`WebhookStore::claim_due`]: senders run it every few seconds, not
    /// at every wake-up.
    pub async fn claim_expired(
        &self,
        limit: i64,
        lease: Duration,
        except: &[String],
    ) -> Result<Vec<Claimed>, WebhookError> {
        let expired = "d.claimed_until IS NOT NULL AND d.claimed_until < $1 AND d.next_attempt_at <= $1";
        self.claim_where(expired, "d.claimed_until", limit, lease, except).await
    }

    /// Claims pending deliveries of enabled endpoints matching `condition`
    /// (which may name `$1`, now), in `order`, passing over the endpoints
    /// in `except` (a sender's endpoints that have all the attempts under
    /// way they may have).
    async fn claim_where(
        &self,
        condition: &str,
        order: &str,
        limit: i64,
        lease: Duration,
        except: &[String],
    ) -> Result<Vec<Claimed>, WebhookError> {
        let now = timestamp(Utc::now());
        let until = timestamp(after(lease));
        let condition = if except.is_empty() {
            condition.to_owned()
        } else {
            let placeholders: Vec<String> = (0..except.len()).map(|i| format!("${}", i + 4)).collect();
            format!("{condition} AND d.endpoint_id NOT IN ({})", placeholders.join(", "))
        };
        // The endpoint is asked about row by row, not joined: a join lets
        // the planner reach for the index of every delivery an endpoint
        // ever had, where the partial index of what waits is the short way.
        let due = format!(
            "SELECT d.id FROM webhook_deliveries d
              WHERE d.status = 'pending' AND {condition}
                AND (SELECT e.enabled FROM webhook_endpoints e WHERE e.id = d.endpoint_id) = 1
              ORDER BY {order} LIMIT $3"
        );
        let returning = "RETURNING id, endpoint_id, event_id, event_type, payload, attempts";
        type Row = (String, String, String, String, String, i64);
        let rows: Vec<Row> = match &self.db {
            Database::Postgres(pool) => {
                let sql = format!(
                    "UPDATE webhook_deliveries SET claimed_until = $2 WHERE id IN ({due} FOR UPDATE OF d SKIP LOCKED) {returning}"
                );
                let query = sqlx::query_as(&sql).bind(&now).bind(&until).bind(limit);
                except.iter().fold(query, |query, endpoint| query.bind(endpoint)).fetch_all(pool).await?
            }
            Database::Sqlite(pool) => {
                let sql = format!("UPDATE webhook_deliveries SET claimed_until = $2 WHERE id IN ({due}) {returning}");
                let _turn = write_turn(&self.db).await;
                let query = sqlx::query_as(&sql).bind(&now).bind(&until).bind(limit);
                except.iter().fold(query, |query, endpoint| query.bind(endpoint)).fetch_all(pool).await?
            }
        };
        self.claimed_from(rows, &until, &now).await
    }

    /// Claimed rows with what sending them needs: each endpoint's URL and
    /// keys, read once.
    async fn claimed_from(
        &self,
        rows: Vec<(String, String, String, String, String, i64)>,
        until: &str,
        now: &str,
    ) -> Result<Vec<Claimed>, WebhookError> {
        let mut endpoints: std::collections::HashMap<String, Option<Target>> = Default::default();
        let mut claimed = Vec::with_capacity(rows.len());
        for (delivery_id, endpoint_id, event_id, event_type, payload, attempts) in rows {
            if !endpoints.contains_key(&endpoint_id) {
                // One endpoint that can't be read must not hold up the
                // others: its rows stay claimed and come back after the
                // claim, the rest go out now.
                let target = match self.target(&endpoint_id, now).await {
                    Ok(target) => target,
                    Err(error) => {
                        let error = error_chain(&error);
                        tracing::error!(endpoint = %endpoint_id, %error, "webhook endpoint unreadable; its deliveries wait");
                        None
                    }
                };
                endpoints.insert(endpoint_id.clone(), target);
            }
            let Some((url, keys)) = endpoints[&endpoint_id].clone() else {
                continue; // deleted with its endpoint meanwhile
            };
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            claimed.push(Claimed {
                delivery_id,
                endpoint_id,
                event_id,
                event_type,
                payload,
                attempts,
                url,
                keys,
                claim: until.to_owned(),
            });
        }
        Ok(claimed)
    }

    /// An endpoint's URL and signing keys: the current secret's, and the
    /// previous one's while a rotation's overlap lasts.
    pub async fn target(&self, endpoint_id: &str, now: &str) -> Result<Option<Target>, WebhookError> {
        const SQL: &str = "SELECT url, secret, previous_secret, previous_until FROM webhook_endpoints WHERE id = $1";
        let row: Option<(String, String, Option<String>, Option<String>)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(endpoint_id).fetch_optional(pool).await)?;
        let Some((url, secret, previous, until)) = row else { return Ok(None) };
        let mut keys = vec![self.open(endpoint_id, &secret)?];
        if let (Some(previous), Some(until)) = (previous, until) {
            if until.as_str() > now {
                keys.push(self.open(endpoint_id, &previous)?);
            }
        }
        Ok(Some((url, keys)))
    }

    /// Records attempts, decides what comes next for each delivery (done,
    /// another attempt, given up) and for its endpoint (its failure
    /// streak; disabled after 410 or failing too long), and releases the
    /// claims: all in one transaction.
    pub async fn record_many(
        &self,
        attempts: &[(&Claimed, &Attempt)],
        policy: &RetryPolicy,
    ) -> Result<(), WebhookError> {
        // Only while the row still carries this claim: a delivery deleted
        // with its endpoint, or whose claim ran out and was taken again,
        // is not this attempt's to record. One statement updates the
        // batch's rows and names those it updated; one more inserts their
        // attempts. (VALUES columns are column1, column2, … on both
        // backends.)
        struct Row<'a> {
            claimed: &'a Claimed,
            attempt: &'a Attempt,
            number: i64,
            at: String,
            status: &'static str,
            next_at: String,
        }
        let rows: Vec<Row> = attempts
            .iter()
            .map(|(claimed, attempt)| {
                let (status, next_at) = next_step(claimed.attempts, attempt, policy);
                let number = i64::from(claimed.attempts) + 1;
                Row { claimed, attempt, number, at: timestamp(attempt.at), status, next_at }
            })
            .collect();
        let endpoints = endpoint_statements(
            attempts.iter().map(|(claimed, attempt)| (claimed.endpoint_id.as_str(), *attempt)),
            policy,
        );
        let _turn = write_turn(&self.db).await;
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let mut updated: std::collections::HashSet<String> = std::collections::HashSet::new();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut update = sqlx::QueryBuilder::new(
                    "UPDATE webhook_deliveries SET attempts = v.column2, status = v.column3, next_attempt_at = v.column4,
                            claimed_until = NULL, updated_at = v.column5 FROM (",
                );
                update.push_values(chunk, |mut values, row| {
                    values.push_bind(&row.claimed.delivery_id).push_bind(row.number).push_bind(row.status)
                        .push_bind(&row.next_at).push_bind(&row.at).push_bind(&row.claimed.claim);
                });
                update.push(
                    ") AS v WHERE webhook_deliveries.id = v.column1 AND webhook_deliveries.claimed_until = v.column6
                     RETURNING webhook_deliveries.id",
                );
                let ids: Vec<String> = update.build_query_scalar().fetch_all(&mut *tx).await?;
                updated.extend(ids);
            }
            let recorded: Vec<&Row> = rows.iter().filter(|row| updated.contains(&row.claimed.delivery_id)).collect();
            for chunk in recorded.chunks(ROWS_PER_STATEMENT) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, latency_ms, error, response_body) ",
                );
                insert.push_values(chunk, |mut values, row| {
                    let latency_ms = i64::try_from(row.attempt.latency.as_millis()).unwrap_or(i64::MAX);
                    values.push_bind(&row.claimed.delivery_id).push_bind(row.number).push_bind(&row.at)
                        .push_bind(row.attempt.status_code.map(i64::from)).push_bind(latency_ms)
                        .push_bind(&row.attempt.error).push_bind(&row.attempt.response_body);
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *tx).await?;
            }
            for (sql, values) in &endpoints {
                values.iter().fold(sqlx::query(sql), |query, value| query.bind(value.as_str())).execute(&mut *tx).await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }

    /// Deliveries still to be delivered or given up, for `/metrics`.
    pub async fn pending(&self) -> Result<i64, WebhookError> {
        const SQL: &str = "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'";
        Ok(on_pool!(&self.db, pool => sqlx::query_scalar(SQL).fetch_one(pool).await)?)
    }

    /// Gives claims back untried (shutdown came first): due again at once
    /// for any sender. A claim that has changed hands meanwhile is left
    /// alone. Returns how many were given back.
    pub async fn release_many(&self, claimed: &[Claimed]) -> Result<u64, WebhookError> {
        let mut released = 0;
        for chunk in claimed.chunks(400) {
            let pairs: Vec<String> = (0..chunk.len()).map(|n| format!("(${}, ${})", 2 * n + 1, 2 * n + 2)).collect();
            let sql = format!(
                "UPDATE webhook_deliveries SET claimed_until = NULL WHERE (id, claimed_until) IN (VALUES {})",
                pairs.join(", ")
            );
            released += on_pool!(&self.db, pool => {
                let query = chunk
                    .iter()
                    .fold(sqlx::query(&sql), |query, c| query.bind(c.delivery_id.as_str()).bind(c.claim.as_str()));
                query.execute(pool).await.map(|done| done.rows_affected())
            })?;
        }
        Ok(released)
    }
}

/// A delivery's status and next attempt time after `attempt`.
pub(super) fn next_step(attempts_before: u32, attempt: &Attempt, policy: &RetryPolicy) -> (&'static str, String) {
    let at = timestamp(attempt.at);
    match &attempt.outcome {
        Outcome::Delivered => ("succeeded", at),
        // The endpoint is disabled with it: the delivery waits with the
        // others queued for it, and re-enabling the endpoint sends it.
        Outcome::Gone => ("pending", at),
        Outcome::Failed { retry_after } => match policy.next_wait(attempts_before + 1, *retry_after) {
            Some(wait) => ("pending", timestamp(attempt.at + chrono::Duration::from_std(wait).unwrap_or_default())),
            None => ("failed", at),
        },
    }
}

/// What a batch's attempts do to their endpoints: each endpoint once, by
/// what its attempts came to (one 410 disables it, one success ends its
/// failure streak), as statements with the values they bind.
pub(super) fn endpoint_statements<'a>(
    attempts: impl Iterator<Item = (&'a str, &'a Attempt)>,
    policy: &RetryPolicy,
) -> Vec<(&'static str, Vec<String>)> {
    let rank = |outcome: &Outcome| match outcome {
        Outcome::Gone => 2,
        Outcome::Delivered => 1,
        Outcome::Failed { .. } => 0,
    };
    let mut outcomes: Vec<(&str, &Attempt)> = Vec::new();
    for (endpoint_id, attempt) in attempts {
        match outcomes.iter_mut().find(|(endpoint, _)| *endpoint == endpoint_id) {
            Some(kept) if rank(&attempt.outcome) > rank(&kept.1.outcome) => kept.1 = attempt,
            Some(_) => {}
            None => outcomes.push((endpoint_id, attempt)),
        }
    }
    let mut statements = Vec::new();
    for (endpoint_id, attempt) in outcomes {
        let at = timestamp(attempt.at);
        let cutoff = timestamp(attempt.at - chrono::Duration::from_std(policy.disable_after).unwrap_or_default());
        for (sql, params) in endpoint_updates(&attempt.outcome) {
            let values = [endpoint_id.to_owned(), at.clone(), cutoff.clone()];
            statements.push((*sql, values[..*params].to_vec()));
        }
    }
    statements
}

/// What an attempt's outcome does to its endpoint: statements, each with
/// how many of (endpoint id, attempt time, disabling cutoff) it binds.
fn endpoint_updates(outcome: &Outcome) -> &'static [(&'static str, usize)] {
    match outcome {
        // Only a write when there is a streak to end.
        Outcome::Delivered => {
            &[("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL", 1)]
        }
        Outcome::Gone => {
            &[("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = 'gone', updated_at = $2 WHERE id = $1", 2)]
        }
        Outcome::Failed { .. } => &[
            ("UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL", 2),
            (
                "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = 'failing', updated_at = $2
                  WHERE id = $1 AND enabled = 1 AND failing_since <= $3",
                3,
            ),
        ],
    }
}

/// The body every attempt of an event's delivery sends: Standard
/// Webhooks' `{type, timestamp, data}`, `data` being the event envelope.
pub fn payload(name: &str, at: &str, data: &Value) -> String {
    /// Serialised in place, not through a `json!` map that would copy
    /// `data`; fields in the order that map had (keys sorted).
    #[derive(serde::Serialize)]
    struct Payload<'a> {
        data: &'a Value,
        timestamp: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    serde_json::to_string(&Payload { data, timestamp: at, kind: name }).expect("a JSON value serialises")
}

impl WebhookStore {
    /// Queues a `webhook.test` event to the tenant's endpoint, due now:
    /// the delivery's id (`None` only if that fresh event was queued
    /// already, which a new random id rules out).
    pub async fn send_test(&self, tenant_id: &str, endpoint_id: &str) -> Result<Option<String>, WebhookError> {
        let event_id = format!("test_{}", Uuid::new_v4().simple());
        let now = timestamp(Utc::now());
        let data =
            json!({"webhookId": endpoint_id, "tenantId": tenant_id, "message": "A test delivery from keyledger"});
        let body = payload(super::TEST_EVENT, &now, &data);
        self.enqueue(tenant_id, endpoint_id, &event_id, super::TEST_EVENT, &body).await
    }
}
