//! The dispatcher: from each batch of events, the deliveries they call
//! for, sent at once and recorded together before the feed moves on.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use keyledger_app::client::error_chain;
use keyledger_app::webhooks::names::USAGE_THRESHOLD;
use keyledger_app::webhooks::{
    matches, payload, timestamp, webhook_name, Attempt, Claimed, Dispatched, NewDelivery, PayloadFormat, RetryPolicy,
    Subscriber, Target, WebhookStore,
};
use keyledger_domain::{License, LicenseEvent};
use keyledger_eventlog::{Cursor, EventLog};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::attempt::{attempt, Request};
use super::{http_client, joined, observe, Joined, Lanes, CLAIM_MARGIN, IN_FLIGHT, WEBHOOK_DISPATCHER};
use crate::feed::{flush, AnyFeed, Feed, Source};
use crate::runtime::{Consumer, ConsumerError, Step};

/// Envelopes the dispatcher takes from the feed at a time.
const DISPATCH_BATCH: usize = 200;
/// How long a batch's first attempts may take before the batch is
/// recorded without them: an attempt still under way then gets a claimed
/// row and is recorded when it ends, one not started (its endpoint's
/// lanes were all taken) a row due now for any sender. A batch does not
/// wait for an endpoint that still has attempts under way from an
/// earlier batch, so a slow endpoint holds up the others' batches by this
/// much once, not at every batch.
const BATCH_WAIT: Duration = Duration::from_secs(1);

/// An attempt the dispatcher has under way.
enum InFlight {
    /// A first attempt of the batch being dispatched: its index there.
    Fresh(usize),
    /// An attempt that outlived its batch; its delivery is a claimed row.
    Carried(Claimed),
    /// An attempt whose delivery was recorded before (the feed handed the
    /// batch over again): not this dispatcher's to record.
    Unrecorded,
}

/// Sends and records each batch's deliveries. Every attempt is a task of
/// its own on one of the endpoint's [`Lanes`].
pub struct Dispatcher {
    source: Source,
    store: WebhookStore,
    policy: RetryPolicy,
    /// How long the rows of attempts that outlive their batch are claimed.
    lease: Duration,
    /// For the license's history when a usage threshold is subscribed to.
    log: EventLog,
    feed: Option<AnyFeed>,
    allow_private: bool,
    client: reqwest::Client,
    metrics: Arc<keyledger_app::Metrics>,
    lanes: Lanes,
    running: JoinSet<Attempt>,
    /// What each task in `running` attempts, with its endpoint.
    attempting: HashMap<tokio::task::Id, (String, InFlight)>,
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
    pub fn new(
        source: Source,
        store: WebhookStore,
        log: EventLog,
        policy: RetryPolicy,
        allow_private: bool,
        metrics: Arc<keyledger_app::Metrics>,
        lanes: Lanes,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            source,
            store,
            lease: policy.timeout + CLAIM_MARGIN,
            client: http_client(&policy, allow_private)?,
            policy,
            log,
            feed: None,
            allow_private,
            metrics,
            lanes,
            running: JoinSet::new(),
            attempting: HashMap::new(),
        })
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
        // acknowledged comes again.
        self.feed = Some(AnyFeed::open(&self.source, WEBHOOK_DISPATCHER).await?);
        Ok(())
    }

    /// The attempts that outlived their batches are finished and recorded
    /// (each ends within the attempt timeout), then the feed's position.
    async fn stop(&mut self) {
        let mut ended = Vec::new();
        while let Some(task) = self.running.join_next_with_id().await {
            ended.extend(self.ended(task));
        }
        if let Err(error) = self.record_carried(&ended).await {
            tracing::warn!(error = %error_chain(&*error), "webhook attempts finished at shutdown not recorded; they are sent again once their claims run out");
        }
        flush(self.feed.as_mut(), WEBHOOK_DISPATCHER).await;
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let mut ended = Vec::new();
        while let Some(task) = self.running.try_join_next_with_id() {
            ended.extend(self.ended(task));
        }
        self.record_carried(&ended).await?;
        let mut feed = self.feed.take().ok_or("no feed")?;
        let batch = feed.next_batch(DISPATCH_BATCH).await?;
        let (mut subscribers, mut deliveries) = (HashMap::new(), Vec::new());
        for envelope in &batch {
            self.dispatch(envelope, &mut subscribers, &mut deliveries).await?;
        }
        if !deliveries.is_empty() {
            if let Err(error) = self.send_and_record(deliveries).await {
                // The batch comes again from the feed; the attempts of
                // this one still under way are not recorded.
                for (_, in_flight) in self.attempting.values_mut() {
                    if matches!(in_flight, InFlight::Fresh(_)) {
                        *in_flight = InFlight::Unrecorded;
                    }
                }
                return Err(error);
            }
        }
        if !batch.is_empty() {
            feed.ack().await?;
        }
        self.feed = Some(feed);
        Ok(if batch.len() == DISPATCH_BATCH { Step::Busy } else { Step::Idle })
    }
}

/// Where a batch's delivery stands while the batch is sent.
enum Progress {
    Queued,
    Running(tokio::task::Id),
    Ended(Attempt),
    /// Not to be sent now: its endpoint could not be read.
    Held,
    /// Its endpoint is gone.
    Dropped,
}

impl Dispatcher {
    /// Sends a batch's deliveries, each endpoint's in event order on its
    /// lanes, waits for them up to [`BATCH_WAIT`], and records what came of
    /// them in one transaction.
    async fn send_and_record(&mut self, deliveries: Vec<NewDelivery>) -> Result<(), ConsumerError> {
        let now = timestamp(Utc::now());
        let mut targets: HashMap<String, Option<Target>> = HashMap::new();
        let mut progress = Vec::with_capacity(deliveries.len());
        // Each endpoint's deliveries not started yet, in event order.
        let mut queues: Vec<(String, VecDeque<usize>)> = Vec::new();
        // Endpoints that could not be read: one must not hold up the
        // others, so its deliveries wait as rows, as a sender's do.
        let mut unreadable = std::collections::HashSet::new();
        for (index, delivery) in deliveries.iter().enumerate() {
            let endpoint = &delivery.endpoint_id;
            if !targets.contains_key(endpoint) && !unreadable.contains(endpoint) {
                match self.store.target(endpoint, &now).await {
                    Ok(target) => {
                        targets.insert(endpoint.clone(), target);
                    }
                    Err(error) => {
                        let error = error_chain(&error);
                        tracing::error!(%endpoint, %error, "webhook endpoint unreadable; its deliveries wait");
                        unreadable.insert(endpoint.clone());
                    }
                }
            }
            if unreadable.contains(endpoint) {
                progress.push(Progress::Held);
            } else if targets[endpoint].is_none() {
                progress.push(Progress::Dropped);
            } else {
                progress.push(Progress::Queued);
                match queues.iter_mut().find(|(e, _)| e == endpoint) {
                    Some((_, queue)) => queue.push_back(index),
                    None => queues.push((endpoint.clone(), VecDeque::from([index]))),
                }
            }
        }
        // Endpoints still busy with earlier batches' attempts: slow ones,
        // which this batch does not wait for.
        let slow: std::collections::HashSet<String> = self
            .attempting
            .values()
            .filter(|(_, in_flight)| matches!(in_flight, InFlight::Carried(_)))
            .map(|(endpoint, _)| endpoint.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let mut carried_ended = Vec::new();
        loop {
            self.start_queued(&deliveries, &targets, &mut queues, &mut progress);
            let waited_for = |(endpoint, in_flight): &(String, InFlight)| {
                matches!(in_flight, InFlight::Fresh(_)) && !slow.contains(endpoint)
            };
            if !self.attempting.values().any(waited_for) {
                break;
            }
            let ended = tokio::select! {
                ended = self.running.join_next_with_id() => ended,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let Some(ended) = ended else { break };
            let (id, attempt) = joined(ended);
            let Some((endpoint, in_flight)) = self.attempting.remove(&id) else { continue };
            self.lanes.give_back(&endpoint);
            match in_flight {
                InFlight::Fresh(index) => progress[index] = Progress::Ended(attempt),
                InFlight::Carried(claimed) => carried_ended.push((claimed, attempt)),
                InFlight::Unrecorded => {}
            }
        }
        let mut dispatched = Dispatched::default();
        let mut under_way = Vec::new();
        for (delivery, progress) in deliveries.into_iter().zip(progress) {
            match progress {
                Progress::Ended(attempt) => {
                    observe(&self.metrics, &delivery.event_id, &delivery.endpoint_id, &attempt);
                    dispatched.ended.push((delivery, attempt));
                }
                Progress::Running(task) => {
                    under_way.push(task);
                    dispatched.under_way.push(delivery);
                }
                Progress::Queued | Progress::Held => dispatched.unsent.push(delivery),
                Progress::Dropped => {}
            }
        }
        let claims = self.store.record_dispatched(&dispatched, self.lease, &self.policy).await?;
        for ((task, delivery), claim) in under_way.into_iter().zip(dispatched.under_way).zip(claims) {
            let Some((_, in_flight)) = self.attempting.get_mut(&task) else {
                continue; // ended meanwhile; its attempt was not recorded and the row's claim runs out
            };
            *in_flight = match claim {
                Some((delivery_id, claim)) => {
                    let (url, keys) = targets[&delivery.endpoint_id].clone().expect("started with a target");
                    InFlight::Carried(Claimed {
                        delivery_id,
                        endpoint_id: delivery.endpoint_id,
                        event_id: delivery.event_id,
                        event_type: delivery.event_type,
                        payload: delivery.payload,
                        attempts: 0,
                        url,
                        keys,
                        claim,
                    })
                }
                None => InFlight::Unrecorded,
            };
        }
        self.record_carried(&carried_ended).await
    }

    /// Starts the queued deliveries whose endpoints have a lane free, as
    /// far as [`IN_FLIGHT`] allows.
    fn start_queued(
        &mut self,
        deliveries: &[NewDelivery],
        targets: &HashMap<String, Option<Target>>,
        queues: &mut [(String, VecDeque<usize>)],
        progress: &mut [Progress],
    ) {
        for (endpoint, queue) in queues.iter_mut() {
            let Some(Some((url, keys))) = targets.get(endpoint.as_str()) else { continue };
            while self.running.len() < IN_FLIGHT && !queue.is_empty() && self.lanes.take(endpoint) {
                let index = queue.pop_front().expect("not empty");
                let delivery = &deliveries[index];
                let request = Request {
                    url: url.clone(),
                    keys: keys.clone(),
                    webhook_id: delivery.event_id.clone(),
                    payload: delivery.payload.clone(),
                };
                let task = self.running.spawn(attempt(self.client.clone(), self.allow_private, request));
                self.attempting.insert(task.id(), (endpoint.clone(), InFlight::Fresh(index)));
                progress[index] = Progress::Running(task.id());
            }
        }
    }

    /// The delivery an ended task attempted, if it outlived its batch and
    /// is this dispatcher's to record, with its attempt.
    fn ended(&mut self, ended: Joined) -> Option<(Claimed, Attempt)> {
        let (id, attempt) = joined(ended);
        let (endpoint, in_flight) = self.attempting.remove(&id)?;
        self.lanes.give_back(&endpoint);
        match in_flight {
            InFlight::Carried(claimed) => Some((claimed, attempt)),
            InFlight::Fresh(_) | InFlight::Unrecorded => None,
        }
    }

    /// Records attempts that outlived their batches, against their rows.
    async fn record_carried(&self, ended: &[(Claimed, Attempt)]) -> Result<(), ConsumerError> {
        if ended.is_empty() {
            return Ok(());
        }
        for (claimed, attempt) in ended {
            observe(&self.metrics, &claimed.delivery_id, &claimed.endpoint_id, attempt);
        }
        let attempts: Vec<(&Claimed, &Attempt)> = ended.iter().map(|(claimed, attempt)| (claimed, attempt)).collect();
        self.store.record_many(&attempts, &self.policy).await?;
        Ok(())
    }
}
