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
    PayloadFormat, RetryPolicy, SafeResolver, Subscriber, WebhookStore, ATTEMPT_BODY_LIMIT,
};
use keyledger_domain::{License, LicenseEvent};
use keyledger_eventlog::{Cursor, EventLog};
use serde_json::{json, Value};
use tokio::task::JoinSet;

pub use crate::feed::Source;
use crate::feed::{flush, AnyFeed, Feed};
use crate::runtime::{Consumer, ConsumerError, Step};

pub const WEBHOOK_DISPATCHER: &str = "webhook-dispatcher";
pub const WEBHOOK_SENDER: &str = "webhook-sender";
/// Envelopes the dispatcher takes from the feed at a time.
const DISPATCH_BATCH: usize = 200;
/// Most deliveries a sender claims from the queue at a time.
const SEND_BATCH: usize = 64;
/// Most attempts a sender has under way at once.
const IN_FLIGHT: usize = 256;
/// Most attempts a sender has under way to one endpoint at once.
pub const ENDPOINT_IN_FLIGHT: usize = 16;
/// How long a sender lets more attempts end, after one did, before it
/// records them together.
const GATHER: Duration = Duration::from_millis(5);
/// How soon a sender asks the table again after finding nothing due in
/// it: retries coming due and other processes' deliveries wait at most
/// this long beyond their time.
const QUEUE_RECHECK: Duration = Duration::from_millis(200);
/// How often a sender looks for claims that ran out (a process died
/// mid-attempt): such a delivery goes out at most this long after its
/// claim ends.
const EXPIRED_CLAIMS_EVERY: Duration = Duration::from_secs(5);
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
        let enough = claim_lasting(left);
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
/// `license.usage_threshold` (seed 003's usage threshold alerts): the
/// tenant's own threshold, and all seats taken.
fn usage_thresholds(tenant_threshold: u32) -> Vec<u32> {
    let mut thresholds = vec![tenant_threshold.clamp(1, 100), 100];
    thresholds.dedup();
    thresholds
}

impl Dispatcher {
    /// `policy` is the senders' (its timeout sets the claims' length).
    pub fn new(source: Source, store: WebhookStore, log: EventLog, handoff: Handoff, policy: &RetryPolicy) -> Self {
        Self { source, store, handoff, lease: policy.timeout + CLAIM_MARGIN, log, feed: None }
    }

    /// The usage thresholds an activation made its license cross: the
    /// seats in use before and after it, replayed from the license's own
    /// events up to it, so the same log always gives the same alerts.
    ///
    /// The tenant's threshold is read when the event is dispatched: a
    /// change of it applies to activations dispatched after it.
    async fn crossings(&self, envelope: &Value, thresholds: &[u32]) -> Result<Vec<(u32, u32, u32)>, ConsumerError> {
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
        Ok(thresholds
            .iter()
            .copied()
            .filter(|threshold| before * 100 < threshold * seats && after * 100 >= threshold * seats)
            .map(|threshold| (threshold, after, seats))
            .collect())
    }

    /// The V2 License Server document's payload of an event:
    /// `{event, timestamp, data: {license_id, activation_id, customer_id}}`
    /// with the integer ids that API shows (the activation's as
    /// `act_<number>`, as the document prints it), read from the license
    /// replayed up to the event, so the same log always gives the same
    /// payload. Events of other aggregates name what they can.
    async fn v2_payload(&self, name: &str, at: &str, envelope: &Value) -> Result<String, ConsumerError> {
        let mut data = json!({ "license_id": null, "activation_id": null, "customer_id": null });
        if let (Some(license_id), Some(sequence)) = (envelope["licenseId"].as_str(), envelope["sequence"].as_i64()) {
            let mut license = License::default();
            for event in self.log.history(license_id, 0, sequence).await? {
                license.apply(serde_json::from_value::<LicenseEvent>(event.payload)?);
            }
            data["license_id"] = json!(license.number);
            let machine = envelope["data"]["machine"].as_str().and_then(keyledger_domain::MachineHash::parse_hex);
            let device = machine.as_ref().and_then(|machine| {
                license.devices.iter().chain(&license.past_devices).find(|device| &device.machine == machine)
            });
            if let Some(number) = device.and_then(|device| device.number) {
                data["activation_id"] = json!(format!("act_{number}"));
            }
            if let Some(customer_id) = &license.customer_id {
                data["customer_id"] = json!(self.store.customer_number(customer_id.as_str()).await?);
            }
        }
        let body = json!({ "event": name, "timestamp": at, "data": data });
        Ok(body.to_string())
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
        let native = wanting.iter().any(|s| s.format == PayloadFormat::Keyledger);
        let body = if native { payload(&name, &at, envelope) } else { String::new() };
        let v2 = if wanting.iter().any(|s| s.format == PayloadFormat::V2Server) {
            self.v2_payload(&name, &at, envelope).await?
        } else {
            String::new()
        };
        for subscriber in wanting {
            let body = match subscriber.format {
                PayloadFormat::Keyledger => body.clone(),
                PayloadFormat::V2Server => v2.clone(),
            };
            out.push(NewDelivery {
                tenant_id: tenant_id.to_owned(),
                endpoint_id: subscriber.id.clone(),
                event_id: event_id.to_owned(),
                event_type: name.clone(),
                payload: body,
            });
        }
        let wanted: Vec<&Subscriber> =
            subscribers[tenant_id].iter().filter(current).filter(|s| matches(&s.patterns, USAGE_THRESHOLD)).collect();
        if event_type == "LicenseActivated" && !wanted.is_empty() {
            let thresholds = usage_thresholds(self.store.usage_threshold(tenant_id).await?);
            for (threshold, used, seats) in self.crossings(envelope, &thresholds).await? {
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

/// Sends due deliveries. Every attempt is a task of its own, recorded as
/// soon as it ends (with whatever else ended meanwhile): nothing waits
/// for an unrelated endpoint. An endpoint has at most
/// [`ENDPOINT_IN_FLIGHT`] attempts under way from this process; its other
/// deliveries wait (claimed ones here, the rest in the queue, where a
/// claim passes over endpoints that are full), so a slow or dead endpoint
/// holds up only itself.
pub struct Sender {
    handoff: Handoff,
    /// When a claim last found nothing due in the table, and the count of
    /// unclaimed queueings then: until [`QUEUE_RECHECK`] has passed or
    /// this process queues unclaimed deliveries, the table is not asked
    /// again (the sender would otherwise ask it at every wake-up that the
    /// handoff already answered).
    queue_quiet: Option<(Instant, u64)>,
    /// When this sender last looked for claims that ran out; `None` until
    /// it first does, and again while it finds a full batch of them.
    expired_looked: Option<Instant>,
    metrics: std::sync::Arc<keyledger_app::Metrics>,
    store: WebhookStore,
    policy: RetryPolicy,
    allow_private: bool,
    client: reqwest::Client,
    /// Attempts under way, each a task; the delivery of each by task.
    running: JoinSet<Attempt>,
    attempting: HashMap<tokio::task::Id, Claimed>,
    /// Attempts under way by endpoint.
    per_endpoint: HashMap<String, usize>,
    /// Claimed deliveries whose endpoint had [`ENDPOINT_IN_FLIGHT`]
    /// attempts under way, by endpoint, oldest first.
    waiting: HashMap<String, VecDeque<Claimed>>,
    /// Deliveries queued or handed over in this process.
    queued: tokio::sync::watch::Receiver<u64>,
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
            queue_quiet: None,
            expired_looked: None,
            metrics,
            store,
            policy,
            allow_private,
            client,
            running: JoinSet::new(),
            attempting: HashMap::new(),
            per_endpoint: HashMap::new(),
            waiting: HashMap::new(),
            queued: keyledger_app::webhooks::queued(),
        })
    }
}

/// One attempt: never fails, whatever the endpoint does; what happened is
/// in the returned record.
async fn attempt(client: reqwest::Client, allow_private: bool, delivery: &Claimed) -> Attempt {
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
    // Checked again at each attempt: an address in the URL itself never
    // goes through the resolver that refuses internal ones.
    if let Err(refused) = check_url(&delivery.url, allow_private) {
        return failed(refused.to_string(), None, String::new());
    }
    let timestamp = at.timestamp();
    let signatures = signature::header(&delivery.keys, &delivery.event_id, timestamp, &delivery.payload);
    let sent = client
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
    /// Attempts that may be started now: [`IN_FLIGHT`] less those under way.
    fn room(&self) -> usize {
        IN_FLIGHT.saturating_sub(self.running.len())
    }

    fn endpoint_has_room(&self, endpoint: &str) -> bool {
        self.per_endpoint.get(endpoint).copied().unwrap_or(0) < ENDPOINT_IN_FLIGHT
    }

    /// Starts the attempt if its endpoint has room, or puts it to wait.
    fn start_or_wait(&mut self, delivery: Claimed) {
        if self.endpoint_has_room(&delivery.endpoint_id) && !self.waiting.contains_key(&delivery.endpoint_id) {
            self.start(delivery);
        } else {
            self.waiting.entry(delivery.endpoint_id.clone()).or_default().push_back(delivery);
        }
    }

    fn start(&mut self, delivery: Claimed) {
        *self.per_endpoint.entry(delivery.endpoint_id.clone()).or_default() += 1;
        let (client, allow_private) = (self.client.clone(), self.allow_private);
        let claimed = delivery.clone();
        let task = self.running.spawn(async move { attempt(client, allow_private, &claimed).await });
        self.attempting.insert(task.id(), delivery);
    }

    /// Starts the waiting deliveries whose endpoints have room again; those
    /// whose claims no longer outlast an attempt are left to run out, to
    /// be claimed again from the queue.
    fn start_waiting(&mut self) {
        let enough = claim_lasting(self.policy.timeout + HANDOFF_SLACK);
        let endpoints: Vec<String> = self.waiting.keys().cloned().collect();
        for endpoint in endpoints {
            while self.endpoint_has_room(&endpoint) && self.room() > 0 {
                let Some(queue) = self.waiting.get_mut(&endpoint) else { break };
                let Some(delivery) = queue.pop_front() else { break };
                if delivery.claim > enough {
                    self.start(delivery);
                }
            }
            if self.waiting.get(&endpoint).is_some_and(|queue| queue.is_empty()) {
                self.waiting.remove(&endpoint);
            }
        }
    }

    /// Endpoints a claim from the queue passes over: those with all their
    /// attempts under way, or with claimed deliveries waiting here.
    fn full_endpoints(&self) -> Vec<String> {
        let full = self.per_endpoint.iter().filter(|(_, n)| **n >= ENDPOINT_IN_FLIGHT).map(|(e, _)| e.clone());
        full.chain(self.waiting.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    }

    /// Starts what is due, as far as there is room: deliveries waiting
    /// here, handed over by the dispatcher, whose claims ran out, and due
    /// in the queue.
    async fn fill(&mut self) -> Result<(), ConsumerError> {
        self.start_waiting();
        let handed = self.handoff.take(self.room(), self.policy.timeout + HANDOFF_SLACK);
        for delivery in handed {
            self.start_or_wait(delivery);
        }
        let lease = self.policy.timeout + CLAIM_MARGIN;
        let limit = self.room().min(SEND_BATCH) as i64;
        if limit > 0 && self.time_to_look_for_expired_claims() {
            let claimed = self.store.claim_expired(limit, lease, &self.full_endpoints()).await?;
            if claimed.len() as i64 == limit {
                // There may be more: the next step looks again.
                self.expired_looked = None;
            }
            for delivery in claimed {
                self.start_or_wait(delivery);
            }
        }
        let limit = self.room().min(SEND_BATCH) as i64;
        if limit > 0 && !self.queue_is_quiet() {
            let queued = keyledger_app::webhooks::queued_unclaimed();
            let claimed = self.store.claim_due(limit, lease, &self.full_endpoints()).await?;
            if claimed.is_empty() {
                self.queue_quiet = Some((Instant::now(), queued));
            }
            for delivery in claimed {
                self.start_or_wait(delivery);
            }
        }
        Ok(())
    }

    /// Waits until an attempt ends, deliveries are queued or handed over,
    /// or [`QUEUE_RECHECK`] passes; then gathers every attempt that has
    /// ended, for [`GATHER`] more at most, so a busy sender records many in
    /// one write.
    async fn finished(&mut self) -> Vec<(Claimed, Attempt)> {
        let mut done = Vec::new();
        tokio::select! {
            ended = self.running.join_next_with_id() => {
                if let Some(ended) = ended {
                    done.push(ended);
                }
            }
            _ = self.queued.changed() => {}
            _ = tokio::time::sleep(QUEUE_RECHECK) => {}
        }
        if !done.is_empty() {
            let gathering = tokio::time::sleep(GATHER);
            tokio::pin!(gathering);
            while !self.running.is_empty() {
                tokio::select! {
                    ended = self.running.join_next_with_id() => match ended {
                        Some(ended) => done.push(ended),
                        None => break,
                    },
                    _ = &mut gathering => break,
                }
            }
        }
        while let Some(ended) = self.running.try_join_next_with_id() {
            done.push(ended);
        }
        done.into_iter().filter_map(|ended| self.ended(ended)).collect()
    }

    /// The delivery an ended task attempted, with its attempt: a task that
    /// panicked is a failed attempt, retried on the schedule.
    fn ended(
        &mut self,
        ended: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>,
    ) -> Option<(Claimed, Attempt)> {
        let (id, attempt) = match ended {
            Ok((id, attempt)) => (id, attempt),
            Err(error) => {
                let failed = Attempt {
                    at: Utc::now(),
                    status_code: None,
                    latency: Duration::ZERO,
                    error: Some(format!("the attempt did not finish: {error}")),
                    response_body: String::new(),
                    outcome: Outcome::Failed { retry_after: None },
                };
                (error.id(), failed)
            }
        };
        let delivery = self.attempting.remove(&id)?;
        if let Some(count) = self.per_endpoint.get_mut(&delivery.endpoint_id) {
            *count -= 1;
            if *count == 0 {
                self.per_endpoint.remove(&delivery.endpoint_id);
            }
        }
        Some((delivery, attempt))
    }

    /// Records attempts that ended, in one write.
    async fn record(&self, ended: &[(Claimed, Attempt)]) -> Result<(), ConsumerError> {
        if ended.is_empty() {
            return Ok(());
        }
        for (delivery, attempt) in ended {
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
        let results: Vec<(&Claimed, &Attempt)> = ended.iter().map(|(claimed, attempt)| (claimed, attempt)).collect();
        self.store.record_many(&results, &self.policy).await?;
        Ok(())
    }

    /// Whether [`EXPIRED_CLAIMS_EVERY`] has passed since the last look
    /// for claims that ran out; if so, the look is this caller's.
    fn time_to_look_for_expired_claims(&mut self) -> bool {
        if self.expired_looked.is_some_and(|at| at.elapsed() < EXPIRED_CLAIMS_EVERY) {
            return false;
        }
        self.expired_looked = Some(Instant::now());
        true
    }

    /// Whether the table was found with nothing due moments ago and
    /// nothing was queued unclaimed here since.
    fn queue_is_quiet(&self) -> bool {
        self.queue_quiet.is_some_and(|(at, queued)| {
            at.elapsed() < QUEUE_RECHECK && queued == keyledger_app::webhooks::queued_unclaimed()
        })
    }
}

/// A claim's expiry as written, for one that lasts `left` more from now.
fn claim_lasting(left: Duration) -> String {
    timestamp(Utc::now() + chrono::Duration::from_std(left).unwrap_or_default())
}

impl Consumer for Sender {
    /// On shutdown the attempts under way are finished and recorded (each
    /// ends within the attempt timeout), and what waits here or in the
    /// handoff is handed back to the queue.
    async fn stop(&mut self) {
        let mut ended = Vec::new();
        while let Some(task) = self.running.join_next_with_id().await {
            ended.extend(self.ended(task));
        }
        if let Err(error) = self.record(&ended).await {
            tracing::warn!(error = %error, "webhook attempts finished at shutdown not recorded; they are sent again once their claims run out");
        }
        let waiting: Vec<Claimed> = self.waiting.drain().flat_map(|(_, queue)| queue).collect();
        self.handoff.put(waiting);
        self.handoff.hand_back(&self.store).await;
    }

    /// Starts what is due, then records what ended meanwhile: busy while
    /// attempts are under way. (Deliveries wait here only while their
    /// endpoint has attempts under way, so none wait when none run.)
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        self.fill().await?;
        if self.running.is_empty() {
            return Ok(Step::Idle);
        }
        let ended = self.finished().await;
        self.record(&ended).await?;
        Ok(Step::Busy)
    }
}
