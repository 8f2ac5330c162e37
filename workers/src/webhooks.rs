//! Webhook delivery, in two consumers:
//!
//! - the **dispatcher** (one per database) reads the feed, the log's
//!   tail or (with NATS) a durable JetStream consumer, and records a
//!   delivery for every enabled endpoint whose subscription matches an
//!   event, before acknowledging the feed: nothing is sent that is not
//!   first recorded, and an event handed over again is recorded once;
//! - the **sender** (every process) claims due deliveries, sends them,
//!   and records each attempt and what follows from it (done, the next
//!   attempt per the retry schedule, given up, the endpoint disabled).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use cqrs_es::Aggregate;
use futures::StreamExt;
use keyledger_app::client::error_chain;
use keyledger_app::webhooks::names::USAGE_THRESHOLD;
use keyledger_app::webhooks::{
    check_url, matches, payload, signature, timestamp, webhook_name, Attempt, Claimed, NewDelivery, Outcome,
    RetryPolicy, SafeResolver, Subscriber, WebhookStore, ATTEMPT_BODY_LIMIT,
};
use keyledger_domain::{License, LicenseEvent};
use keyledger_eventlog::{Cursor, EventLog};
use serde_json::{json, Value};

pub use crate::feed::Source;
use crate::feed::{flush, AnyFeed, Feed};
use crate::runtime::{Consumer, ConsumerError, Step};

pub const WEBHOOK_DISPATCHER: &str = "webhook-dispatcher";
pub const WEBHOOK_SENDER: &str = "webhook-sender";
/// Envelopes the dispatcher takes from the feed at a time.
const DISPATCH_BATCH: usize = 200;
/// Deliveries a sender lane claims, and sends at once, at a time.
const SEND_BATCH: i64 = 64;
/// Lanes of claim, send, record a sender runs at once.
const LANES: usize = 4;
/// How soon a sender asks the table again after finding nothing due in
/// it: retries coming due and other processes' deliveries wait at most
/// this long beyond their time.
const QUEUE_RECHECK: Duration = Duration::from_millis(200);
/// How often a sender looks for claims that ran out (a process died
/// mid-attempt): such a delivery goes out at most this long after its
/// claim ends.
const EXPIRED_CLAIMS_EVERY: Duration = Duration::from_secs(5);
/// How long a lane starts new batches within one step.
const LANE_BUDGET: Duration = Duration::from_millis(500);
/// How long a claim lasts beyond the attempt's own timeout; a process
/// that dies mid-attempt holds its deliveries this long.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);
/// A handed-over delivery is sent only while its claim outlasts an
/// attempt's timeout by this much.
const HANDOFF_SLACK: Duration = Duration::from_secs(2);

/// Deliveries the dispatcher recorded already claimed, waiting for this
/// process's sender: it sends them without a claiming query, within
/// milliseconds of their events. What is not sent while its claim has
/// time left (a backlog) is left to the queue: the claim runs out and any
/// sender takes it. On shutdown what is still waiting is handed back to
/// the queue at once.
#[derive(Clone, Default)]
pub struct Handoff(Arc<Mutex<VecDeque<Claimed>>>);

/// Most deliveries waiting in the handoff; past it the dispatcher records
/// them unclaimed, for the senders to claim.
const HANDOFF_MAX: usize = 4096;

impl Handoff {
    fn room(&self) -> usize {
        HANDOFF_MAX.saturating_sub(self.0.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    fn put(&self, claimed: Vec<Claimed>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(claimed);
    }

    /// Everything waiting, to be handed back.
    fn drain(&self) -> Vec<Claimed> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect()
    }

    /// Gives every delivery still waiting back to the queue, so on
    /// shutdown another process's sender can take them at once rather
    /// than after their claims run out.
    async fn hand_back(&self, store: &WebhookStore) {
        let waiting = self.drain();
        if waiting.is_empty() {
            return;
        }
        match store.release_many(&waiting).await {
            Ok(released) => tracing::info!(released, "webhook deliveries handed back to the queue"),
            Err(error) => tracing::warn!(
                error = %error_chain(&error),
                waiting = waiting.len(),
                "webhook deliveries not handed back; they are sent once their claims run out"
            ),
        }
    }

    /// Up to `max` deliveries whose claims last at least `left` more, so
    /// an attempt started now ends before anyone else may claim it; the
    /// others are dropped here and claimed from the queue later.
    fn take(&self, max: usize, left: Duration) -> Vec<Claimed> {
        let enough = timestamp(Utc::now() + chrono::Duration::from_std(left).unwrap_or_default());
        let mut waiting = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(claimed) = waiting.pop_front() else { break };
            if claimed.claim > enough {
                taken.push(claimed);
            }
        }
        taken
    }
}

pub struct Dispatcher {
    source: Source,
    store: WebhookStore,
    handoff: Handoff,
    /// How long the deliveries it hands over are claimed for.
    lease: Duration,
    /// For the license's history when a usage threshold is subscribed to.
    log: EventLog,
    feed: Option<AnyFeed>,
}

/// Seats in use, in percent of the seats, whose crossing upwards sends
/// `license.usage_threshold` (seed 003's usage threshold alerts).
const USAGE_THRESHOLDS: [u32; 2] = [80, 100];

impl Dispatcher {
    /// `policy` is the senders' (its timeout sets the claims' length).
    pub fn new(source: Source, store: WebhookStore, log: EventLog, handoff: Handoff, policy: &RetryPolicy) -> Self {
        Self { source, store, handoff, lease: policy.timeout + CLAIM_MARGIN, log, feed: None }
    }

    /// The usage thresholds an activation made its license cross: the
    /// seats in use before and after it, replayed from the license's own
    /// events up to it, so the same log always gives the same alerts.
    async fn crossings(&self, envelope: &Value) -> Result<Vec<(u32, u32, u32)>, ConsumerError> {
        let (Some(license_id), Some(sequence)) = (envelope["licenseId"].as_str(), envelope["sequence"].as_i64()) else {
            return Ok(Vec::new());
        };
        let events = self.log.history(license_id, 0, sequence).await?;
        let mut license = License::default();
        let mut before = 0;
        for event in events {
            if event.sequence == sequence {
                before = license.devices.len() as u32;
            }
            license.apply(serde_json::from_value::<LicenseEvent>(event.payload)?);
        }
        let (after, seats) = (license.devices.len() as u32, license.max_activations.get());
        Ok(USAGE_THRESHOLDS
            .into_iter()
            .filter(|threshold| before * 100 < threshold * seats && after * 100 >= threshold * seats)
            .map(|threshold| (threshold, after, seats))
            .collect())
    }

    /// Adds the deliveries one envelope calls for to `out`.
    async fn dispatch(
        &self,
        envelope: &Value,
        subscribers: &mut HashMap<String, Vec<Subscriber>>,
        out: &mut Vec<NewDelivery>,
    ) -> Result<(), ConsumerError> {
        let (Some(tenant_id), Some(event_type), Some(event_id)) =
            (envelope["tenantId"].as_str(), envelope["type"].as_str(), envelope["eventId"].as_str())
        else {
            tracing::warn!(%envelope, "an event without tenant, type or id; no webhook for it");
            return Ok(());
        };
        if !subscribers.contains_key(tenant_id) {
            subscribers.insert(tenant_id.to_owned(), self.store.subscribers(tenant_id).await?);
        }
        let name = webhook_name(event_type);
        let at = envelope["occurredAt"].as_str().map_or_else(|| timestamp(Utc::now()), str::to_owned);
        // Both times are RFC 3339 in UTC with microseconds: text order is
        // time order.
        let current = |s: &&Subscriber| s.since <= at;
        let wanting: Vec<&Subscriber> =
            subscribers[tenant_id].iter().filter(current).filter(|s| matches(&s.patterns, &name)).collect();
        // Most events of a busy log want no webhook: the body is only
        // written for one that does.
        let body = if wanting.is_empty() { String::new() } else { payload(&name, &at, envelope) };
        for subscriber in wanting {
            out.push(NewDelivery {
                tenant_id: tenant_id.to_owned(),
                endpoint_id: subscriber.id.clone(),
                event_id: event_id.to_owned(),
                event_type: name.clone(),
                payload: body.clone(),
            });
        }
        let wanted: Vec<&Subscriber> =
            subscribers[tenant_id].iter().filter(current).filter(|s| matches(&s.patterns, USAGE_THRESHOLD)).collect();
        if event_type == "LicenseActivated" && !wanted.is_empty() {
            for (threshold, used, seats) in self.crossings(envelope).await? {
                // Derived from the activation's id, so it is the same
                // whenever this event is dispatched.
                let alert_id = format!("{event_id}-usage-{threshold}");
                let data = json!({
                    "licenseId": envelope["licenseId"], "tenantId": tenant_id, "threshold": threshold,
                    "seatsUsed": used, "seats": seats, "eventId": event_id,
                    "sequence": envelope["sequence"], "hash": envelope["hash"],
                });
                let body = payload(USAGE_THRESHOLD, &at, &data);
                for subscriber in &wanted {
                    out.push(NewDelivery {
                        tenant_id: tenant_id.to_owned(),
                        endpoint_id: subscriber.id.clone(),
                        event_id: alert_id.clone(),
                        event_type: USAGE_THRESHOLD.to_owned(),
                        payload: body.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// While a database has no webhook endpoint at all, the dispatcher on the
/// log's tail is moved to the log's end: no endpoint can want what
/// happened before it existed, and an upgraded database should not be
/// replayed for nothing. Run at start-up, before this process serves.
/// (Once an endpoint exists, a dispatcher that never ran reads from the
/// start, so events made by processes that don't deliver are not lost.)
pub async fn start_dispatching_at_end_if_new(log: &EventLog, store: &WebhookStore) -> Result<(), ConsumerError> {
    if log.checkpoint(WEBHOOK_DISPATCHER).await? == Cursor::START && !store.any_endpoint().await? {
        if let Some(end) = log.end_cursor().await? {
            tracing::info!(
                position = end.position,
                "no webhook endpoint yet: webhook dispatching starts at the log's end"
            );
            log.save_checkpoint(WEBHOOK_DISPATCHER, end).await?;
        }
    }
    Ok(())
}

impl Consumer for Dispatcher {
    async fn start(&mut self) -> Result<(), ConsumerError> {
        // A fresh feed at each start: whatever was handed over and not
        // acknowledged comes again, and is recorded once.
        self.feed = Some(AnyFeed::open(&self.source, WEBHOOK_DISPATCHER).await?);
        Ok(())
    }

    /// The sender may have stopped first: what the last step handed over
    /// goes back to the queue.
    async fn stop(&mut self) {
        self.handoff.hand_back(&self.store).await;
        flush(self.feed.as_mut(), WEBHOOK_DISPATCHER).await;
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let mut feed = self.feed.take().ok_or("no feed")?;
        let batch = feed.next_batch(DISPATCH_BATCH).await?;
        let (mut subscribers, mut deliveries) = (HashMap::new(), Vec::new());
        for envelope in &batch {
            self.dispatch(envelope, &mut subscribers, &mut deliveries).await?;
        }
        if !deliveries.is_empty() && deliveries.len() <= self.handoff.room() {
            let claimed = self.store.enqueue_claimed(deliveries, self.lease).await?;
            self.handoff.put(claimed);
            keyledger_app::webhooks::announce();
        } else {
            self.store.enqueue_many(deliveries).await?;
        }
        if !batch.is_empty() {
            feed.ack().await?;
        }
        self.feed = Some(feed);
        Ok(if batch.len() == DISPATCH_BATCH { Step::Busy } else { Step::Idle })
    }
}

/// Sends due deliveries.
pub struct Sender {
    handoff: Handoff,
    /// When a claim last found nothing due in the table, and the count of
    /// unclaimed queueings then: until [`QUEUE_RECHECK`] has passed or
    /// this process queues unclaimed deliveries, the table is not asked
    /// again (the lanes would otherwise ask it at every wake-up that the
    /// handoff already answered).
    queue_quiet: std::sync::Mutex<Option<(Instant, u64)>>,
    /// When this sender last looked for claims that ran out; `None` until
    /// it first does, and again while it finds a full batch of them.
    expired_looked: std::sync::Mutex<Option<Instant>>,
    metrics: std::sync::Arc<keyledger_app::Metrics>,
    store: WebhookStore,
    policy: RetryPolicy,
    allow_private: bool,
    client: reqwest::Client,
}

impl Sender {
    pub fn new(
        store: WebhookStore,
        policy: RetryPolicy,
        allow_private: bool,
        metrics: std::sync::Arc<keyledger_app::Metrics>,
        handoff: Handoff,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(SafeResolver { allow_private }))
            .user_agent(concat!("keyledger-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            handoff,
            queue_quiet: std::sync::Mutex::new(None),
            expired_looked: std::sync::Mutex::new(None),
            metrics,
            store,
            policy,
            allow_private,
            client,
        })
    }

    /// One attempt: never fails, whatever the endpoint does; what happened
    /// is in the returned record.
    async fn attempt(&self, delivery: &Claimed) -> Attempt {
        let at = Utc::now();
        let started = Instant::now();
        let failed = |error: String, status_code: Option<u16>, body: String| Attempt {
            at,
            status_code,
            latency: started.elapsed(),
            error: Some(error),
            response_body: body,
            outcome: Outcome::Failed { retry_after: None },
        };
        // Checked again at each attempt: an address in the URL itself
        // never goes through the resolver that refuses internal ones.
        if let Err(refused) = check_url(&delivery.url, self.allow_private) {
            return failed(refused.to_string(), None, String::new());
        }
        let timestamp = at.timestamp();
        let signatures = signature::header(&delivery.keys, &delivery.event_id, timestamp, &delivery.payload);
        let sent = self
            .client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(delivery.payload.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return failed(describe(error), None, String::new()),
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = read_capped(response).await;
        let outcome = Outcome::of_status(status, retry_after.as_deref());
        let error = match outcome {
            Outcome::Delivered => None,
            Outcome::Gone => Some("the endpoint answered 410 Gone; it is disabled".to_owned()),
            Outcome::Failed { .. } => Some(format!("the endpoint answered {status}")),
        };
        Attempt { at, status_code: Some(status), latency: started.elapsed(), error, response_body: body, outcome }
    }
}

/// A reqwest error as a line for the delivery log, without the URL.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The first [`ATTEMPT_BODY_LIMIT`] bytes of an answer; the rest is not
/// read.
async fn read_capped(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(ATTEMPT_BODY_LIMIT - body.len())]);
        if body.len() >= ATTEMPT_BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

impl Sender {
    /// Claims one batch, sends it and records what came of it; false when
    /// nothing was due.
    async fn send_batch(&self) -> Result<bool, ConsumerError> {
        let lease = self.policy.timeout + CLAIM_MARGIN;
        let mut claimed = self.handoff.take(SEND_BATCH as usize, self.policy.timeout + HANDOFF_SLACK);
        if claimed.is_empty() && self.time_to_look_for_expired_claims() {
            claimed = self.store.claim_expired(SEND_BATCH, lease).await?;
            if claimed.len() as i64 == SEND_BATCH {
                // There may be more: the next batch looks again.
                *self.expired_looked.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        if claimed.is_empty() {
            if self.queue_is_quiet() {
                return Ok(false);
            }
            let queued = keyledger_app::webhooks::queued_unclaimed();
            claimed = self.store.claim_due(SEND_BATCH, lease).await?;
            if claimed.is_empty() {
                *self.queue_quiet.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), queued));
                return Ok(false);
            }
        }
        let attempts = futures::future::join_all(claimed.iter().map(|delivery| self.attempt(delivery))).await;
        for (delivery, attempt) in claimed.iter().zip(&attempts) {
            let outcome = match attempt.outcome {
                Outcome::Delivered => "delivered",
                Outcome::Gone => "gone",
                Outcome::Failed { .. } => "failed",
            };
            self.metrics.webhook_attempt(outcome, attempt.latency.as_secs_f64());
            if let Some(error) = &attempt.error {
                tracing::info!(delivery = %delivery.delivery_id, endpoint = %delivery.endpoint_id, %error, "webhook attempt failed");
            }
        }
        let results: Vec<(&Claimed, &Attempt)> = claimed.iter().zip(&attempts).collect();
        self.store.record_many(&results, &self.policy).await?;
        Ok(true)
    }

    /// Whether [`EXPIRED_CLAIMS_EVERY`] has passed since the last look
    /// for claims that ran out; if so, the look is this caller's (one lane
    /// of the sender's makes it).
    fn time_to_look_for_expired_claims(&self) -> bool {
        let mut looked = self.expired_looked.lock().unwrap_or_else(|p| p.into_inner());
        if looked.is_some_and(|at| at.elapsed() < EXPIRED_CLAIMS_EVERY) {
            return false;
        }
        *looked = Some(Instant::now());
        true
    }

    /// Whether the table was found with nothing due moments ago and
    /// nothing was queued unclaimed here since.
    fn queue_is_quiet(&self) -> bool {
        let quiet = *self.queue_quiet.lock().unwrap_or_else(|p| p.into_inner());
        quiet.is_some_and(|(at, queued)| {
            at.elapsed() < QUEUE_RECHECK && queued == keyledger_app::webhooks::queued_unclaimed()
        })
    }

    /// Batches back to back until nothing is due or [`LANE_BUDGET`] has
    /// passed, so a step ends soon and shutdown waits for one batch at most.
    async fn lane(&self) -> Result<bool, ConsumerError> {
        let started = Instant::now();
        let mut sent = false;
        while started.elapsed() < LANE_BUDGET {
            if !self.send_batch().await? {
                break;
            }
            sent = true;
        }
        Ok(sent)
    }
}

impl Consumer for Sender {
    /// [`LANES`] lanes of claim, send, record run at once: while one waits
    /// for its endpoints, another writes its outcomes or claims the next
    /// batch. A slow endpoint holds up only its own lane.
    async fn stop(&mut self) {
        self.handoff.hand_back(&self.store).await;
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let lanes = futures::future::join_all((0..LANES).map(|_| self.lane())).await;
        let mut busy = false;
        for lane in lanes {
            busy |= lane?;
        }
        Ok(if busy { Step::Busy } else { Step::Idle })
    }
}
