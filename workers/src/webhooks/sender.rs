//! The sender: sends the deliveries that have rows of their own.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::Utc;
use keyledger_app::client::error_chain;
use keyledger_app::webhooks::{timestamp, Attempt, Claimed, RetryPolicy, WebhookStore};
use tokio::task::JoinSet;

use super::attempt::{attempt, Request};
use super::{http_client, joined, observe, Joined, Lanes, CLAIM_MARGIN, IN_FLIGHT};
use crate::runtime::{Consumer, ConsumerError, Step};

/// Most deliveries a sender claims from the queue at a time.
const SEND_BATCH: usize = 64;
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
/// A claimed delivery waiting for its endpoint's lane is sent only while
/// its claim outlasts an attempt's timeout by this much.
const CLAIM_SLACK: Duration = Duration::from_secs(2);

/// Sends due deliveries. Every attempt is a task of its own, recorded as
/// soon as it ends (with whatever else ended meanwhile): nothing waits
/// for an unrelated endpoint. An endpoint has at most
/// [`super::ENDPOINT_IN_FLIGHT`] attempts under way from this process; its other
/// deliveries wait (claimed ones here, the rest in the queue, where a
/// claim passes over endpoints that are full), so a slow or dead endpoint
/// holds up only itself.
pub struct Sender {
    /// When a claim last found nothing due in the table, and the count of
    /// unclaimed queueings then: until [`QUEUE_RECHECK`] has passed or
    /// this process queues unclaimed deliveries, the table is not asked
    /// again (the sender would otherwise ask it at every wake-up).
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
    /// Attempts under way by endpoint, this process's.
    lanes: Lanes,
    /// Claimed deliveries whose endpoint had [`super::ENDPOINT_IN_FLIGHT`]
    /// attempts under way, by endpoint, oldest first.
    waiting: HashMap<String, VecDeque<Claimed>>,
    /// Deliveries queued in this process.
    queued: tokio::sync::watch::Receiver<u64>,
}

impl Sender {
    pub fn new(
        store: WebhookStore,
        policy: RetryPolicy,
        allow_private: bool,
        metrics: std::sync::Arc<keyledger_app::Metrics>,
        lanes: Lanes,
    ) -> Result<Self, reqwest::Error> {
        let client = http_client(&policy, allow_private)?;
        Ok(Self {
            queue_quiet: None,
            expired_looked: None,
            metrics,
            store,
            policy,
            allow_private,
            client,
            running: JoinSet::new(),
            attempting: HashMap::new(),
            lanes,
            waiting: HashMap::new(),
            queued: keyledger_app::webhooks::queued(),
        })
    }
}

impl Sender {
    /// Attempts that may be started now: [`IN_FLIGHT`] less those under way.
    fn room(&self) -> usize {
        IN_FLIGHT.saturating_sub(self.running.len())
    }

    /// Starts the attempt if its endpoint has a lane free, or puts it to
    /// wait.
    fn start_or_wait(&mut self, delivery: Claimed) {
        if !self.waiting.contains_key(&delivery.endpoint_id) && self.lanes.take(&delivery.endpoint_id) {
            self.start(delivery);
        } else {
            self.waiting.entry(delivery.endpoint_id.clone()).or_default().push_back(delivery);
        }
    }

    /// Starts an attempt on a lane taken for it.
    fn start(&mut self, delivery: Claimed) {
        let (client, allow_private) = (self.client.clone(), self.allow_private);
        let request = Request::of(&delivery);
        let task = self.running.spawn(attempt(client, allow_private, request));
        self.attempting.insert(task.id(), delivery);
    }

    /// Starts the waiting deliveries whose endpoints have room again; those
    /// whose claims no longer outlast an attempt are left to run out, to
    /// be claimed again from the queue.
    fn start_waiting(&mut self) {
        let enough = claim_lasting(self.policy.timeout + CLAIM_SLACK);
        let endpoints: Vec<String> = self.waiting.keys().cloned().collect();
        for endpoint in endpoints {
            while self.room() > 0 && self.lanes.has_room(&endpoint) {
                let Some(queue) = self.waiting.get_mut(&endpoint) else { break };
                let Some(delivery) = queue.pop_front() else { break };
                if delivery.claim > enough && self.lanes.take(&endpoint) {
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
        let full = self.lanes.full().into_iter();
        full.chain(self.waiting.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    }

    /// Starts what is due, as far as there is room: deliveries waiting
    /// here, whose claims ran out, and due in the queue.
    async fn fill(&mut self) -> Result<(), ConsumerError> {
        self.start_waiting();
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

    /// The delivery an ended task attempted, with its attempt.
    fn ended(&mut self, ended: Joined) -> Option<(Claimed, Attempt)> {
        let (id, attempt) = joined(ended);
        let delivery = self.attempting.remove(&id)?;
        self.lanes.give_back(&delivery.endpoint_id);
        Some((delivery, attempt))
    }

    /// Records attempts that ended, in one write.
    async fn record(&self, ended: &[(Claimed, Attempt)]) -> Result<(), ConsumerError> {
        if ended.is_empty() {
            return Ok(());
        }
        for (delivery, attempt) in ended {
            observe(&self.metrics, &delivery.delivery_id, &delivery.endpoint_id, attempt);
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
    /// ends within the attempt timeout), and what waits here is handed
    /// back to the queue at once, for another process's sender.
    async fn stop(&mut self) {
        let mut ended = Vec::new();
        while let Some(task) = self.running.join_next_with_id().await {
            ended.extend(self.ended(task));
        }
        if let Err(error) = self.record(&ended).await {
            tracing::warn!(error = %error, "webhook attempts finished at shutdown not recorded; they are sent again once their claims run out");
        }
        let waiting: Vec<Claimed> = self.waiting.drain().flat_map(|(_, queue)| queue).collect();
        if !waiting.is_empty() {
            match self.store.release_many(&waiting).await {
                Ok(released) => tracing::info!(released, "webhook deliveries handed back to the queue"),
                Err(error) => tracing::warn!(
                    error = %error_chain(&error),
                    waiting = waiting.len(),
                    "webhook deliveries not handed back; they are sent once their claims run out"
                ),
            }
        }
    }

    /// Starts what is due, then records what ended meanwhile: busy while
    /// attempts are under way. (Deliveries wait here while their
    /// endpoint's lanes are taken, by this sender or the dispatcher; an
    /// idle step tries them again.)
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
