//! The consumer runtime: the one way a background consumer runs.
//!
//! A consumer only says how to take one step of its work
//! ([`Consumer::step`]). The runtime owns the rest, the same for every
//! consumer: its name and status, the lease that makes it the one active
//! instance on a database (for those that need one), waking up when
//! events are committed rather than only on a timer, backing off while it
//! fails, restarting it afresh when it panics, and stopping it gracefully:
//! on shutdown no new step begins, a step under way is finished, and then
//! the consumer's task ends.
//!
//! Whatever a consumer keeps across restarts (its checkpoint) it keeps in
//! the database or in NATS; a restart builds a new consumer from its
//! factory, so nothing half-done in a panicked one is reused.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use keyledger_app::client::error_chain;
use keyledger_eventlog::{commits, Database};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Lease;

/// What a step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It did work and more may be waiting: step again at once.
    Busy,
    /// Nothing more to do now: wait for a commit or the idle interval.
    Idle,
}

pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

/// A background consumer. `start` runs before the first step and again
/// after every failure of `step` (to reconnect, re-read a checkpoint);
/// a step is never cancelled midway by the runtime.
pub trait Consumer: Send + 'static {
    fn start(&mut self) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async { Ok(()) }
    }

    fn step(&mut self) -> impl Future<Output = Result<Step, ConsumerError>> + Send;

    /// Called once when the runtime stops the consumer on shutdown, after
    /// its last step: hands back what it holds and has not done, so
    /// another process can take it over at once.
    fn stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How a consumer is run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Unique in a process; also the lease's name.
    pub name: String,
    /// Only one process on a database runs it at a time; the others wait
    /// as standbys and take over when its holder goes.
    pub exclusive: bool,
    /// Longest wait between idle steps.
    pub idle: Duration,
    /// A signal that ends an idle wait early: commits to the log for
    /// consumers of the tail, or whatever else the consumer waits for.
    pub wake: Option<watch::Receiver<u64>>,
    /// After the signal wakes it, how long to let more commits gather
    /// before stepping, so a busy log costs a query per few milliseconds
    /// rather than one per event.
    pub gather: Duration,
}

impl Spec {
    /// A consumer of the log's tail: woken by commits, polling every
    /// `idle` for commits made by other processes.
    pub fn follower(name: &str, idle: Duration) -> Self {
        Self { name: name.to_owned(), exclusive: false, idle, wake: Some(commits()), gather: Duration::from_millis(2) }
    }

    /// A job run every `interval`.
    pub fn periodic(name: &str, interval: Duration) -> Self {
        Self { name: name.to_owned(), exclusive: false, idle: interval, wake: None, gather: Duration::ZERO }
    }

    /// Ends idle waits early when `signal` changes.
    pub fn woken_by(mut self, signal: watch::Receiver<u64>) -> Self {
        self.wake = Some(signal);
        self
    }

    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Lets commits gather for `gather` after a wake-up: for consumers
    /// whose answers nobody waits on by the millisecond, larger batches
    /// mean fewer transactions of their own beside the commands'.
    pub fn gathering(mut self, gather: Duration) -> Self {
        self.gather = gather;
        self
    }
}

/// Where a consumer is, for `/health` and `/metrics`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    /// Waiting for another process to give up the lease.
    Standby,
    Running,
    /// Its last step failed; it is retrying after a pause.
    Failing,
    /// It panicked and is being built again.
    Restarting,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub name: String,
    pub state: State,
    pub exclusive: bool,
    /// Times it panicked and was built again.
    pub restarts: u64,
    /// Failed steps (errors, not panics) since the process started.
    pub failures: u64,
    /// Failures since the last good step.
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    /// When its last step succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When its current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
}

impl Status {
    fn new(spec: &Spec) -> Self {
        Self {
            name: spec.name.clone(),
            state: State::Starting,
            exclusive: spec.exclusive,
            restarts: 0,
            failures: 0,
            consecutive_failures: 0,
            last_error: None,
            last_success_at: None,
            failing_since: None,
        }
    }

    /// Down: panicked and not yet back, or failing for longer than
    /// `grace`. A standby is not down: another process does the work.
    pub fn is_down(&self, now: DateTime<Utc>, grace: Duration) -> bool {
        match self.state {
            State::Restarting | State::Stopped => true,
            State::Failing => {
                self.failing_since.is_some_and(|since| (now - since).to_std().unwrap_or_default() > grace)
            }
            State::Starting | State::Standby | State::Running => false,
        }
    }
}

/// Every consumer's status in this process.
#[derive(Debug, Default)]
pub struct Statuses(Mutex<BTreeMap<String, Status>>);

impl Statuses {
    pub fn all(&self) -> Vec<Status> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Status)) {
        if let Some(status) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name) {
            change(status);
        }
    }
}

/// How long a consumer that panicked waits before it is built again, at
/// first; it doubles with each panic in a row up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest pause after a failed step: a consumer waiting on NATS or
/// the database to come back tries at least this often.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// A consumer that ran this long without panicking starts its backoff over.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How often an exclusive consumer confirms it still holds its lease.
const LEASE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs consumers until [`Runtime::shutdown`].
pub struct Runtime {
    db: Database,
    statuses: Arc<Statuses>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Runtime {
    pub fn new(db: Database) -> Self {
        Self { db, statuses: Arc::default(), stop: watch::channel(false).0, tasks: Vec::new() }
    }

    pub fn statuses(&self) -> Arc<Statuses> {
        self.statuses.clone()
    }

    /// Runs consumers built by `make` under `spec` until shutdown; a
    /// consumer that panics is logged, counted and built again.
    pub fn spawn<C: Consumer>(&mut self, spec: Spec, make: impl Fn() -> C + Send + Sync + 'static) {
        self.statuses.0.lock().unwrap_or_else(|p| p.into_inner()).insert(spec.name.clone(), Status::new(&spec));
        let supervisor =
            Supervisor { db: self.db.clone(), spec, statuses: self.statuses.clone(), stop: self.stop.subscribe() };
        self.tasks.push(tokio::spawn(supervisor.run(make)));
    }

    /// Stops every consumer: no step begins after this is called, the
    /// steps under way finish, then their tasks end. Whatever is still
    /// running after `grace` is aborted (its work comes again after a
    /// restart: consumers only move their checkpoints after their work).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("a consumer did not stop within {grace:?}; aborted");
                task.abort();
            }
        }
    }
}

impl Runtime {
    /// Kills every consumer where it stands, as a crash would: no step is
    /// finished. For tests of what survives a crash.
    pub async fn abort(self) {
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Supervisor {
    db: Database,
    spec: Spec,
    statuses: Arc<Statuses>,
    stop: watch::Receiver<bool>,
}

impl Supervisor {
    async fn run<C: Consumer>(mut self, make: impl Fn() -> C + Send + Sync + 'static) {
        let name = self.spec.name.clone();
        let mut panics_in_a_row = 0u32;
        let make = Arc::new(make);
        loop {
            let started = Instant::now();
            let runner = Runner {
                db: self.db.clone(),
                spec: self.spec.clone(),
                statuses: self.statuses.clone(),
                stop: self.stop.clone(),
            };
            // Its own task, so a panic (in building the consumer too) ends
            // that task only, and shows here; aborting the supervisor
            // aborts it too.
            let make = make.clone();
            let life = tokio::spawn(async move {
                AssertUnwindSafe(async move {
                    let consumer = make();
                    runner.run(consumer).await
                })
                .catch_unwind()
                .await
            });
            let outcome = AbortOnDrop(life).await;
            let panic = match outcome {
                Ok(Ok(())) => break, // stopped
                Ok(Err(panic)) => panic_message(panic.as_ref()),
                Err(join) => join.to_string(),
            };
            if started.elapsed() > STABLE_AFTER {
                panics_in_a_row = 0;
            }
            panics_in_a_row += 1;
            tracing::error!(consumer = %name, panic = %panic, "consumer panicked; building it again");
            self.statuses.update(&name, |status| {
                status.state = State::Restarting;
                status.restarts += 1;
                status.last_error = Some(format!("panicked: {panic}"));
            });
            let wait = FIRST_BACKOFF.saturating_mul(1 << (panics_in_a_row - 1).min(8)).min(MAX_BACKOFF);
            if stopped_during(&mut self.stop, wait).await {
                break;
            }
        }
        self.statuses.update(&name, |status| status.state = State::Stopped);
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Waits `wait`, or less if the runtime is stopping; true if it is.
async fn stopped_during(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if is_stopping(stop) {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => is_stopping(stop),
        _ = stopping(stop) => true,
    }
}

fn is_stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves when the runtime is stopping: told to, or dropped (a runtime
/// dropped without [`Runtime::shutdown`] takes its consumers with it).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // It only ever changes from false to true.
    let _ = stop.changed().await;
}

/// One life of one consumer, from its start to shutdown or a panic.
struct Runner {
    db: Database,
    spec: Spec,
    statuses: Arc<Statuses>,
    stop: watch::Receiver<bool>,
}

impl Runner {
    /// Steps the consumer until shutdown, then lets it hand back its work
    /// while it still holds its lease (so no standby starts from a
    /// checkpoint the stop is about to move).
    async fn run<C: Consumer>(mut self, mut consumer: C) {
        let lease = self.steps(&mut consumer).await;
        consumer.stop().await;
        drop(lease);
    }

    /// Steps the consumer until shutdown; returns the lease it holds.
    async fn steps<C: Consumer>(&mut self, consumer: &mut C) -> Option<Lease> {
        let name = self.spec.name.clone();
        let mut wake = self.spec.wake.clone();
        let mut lease = None;
        let mut lease_checked = Instant::now();
        let mut started = false;
        let mut failures = 0u32;
        loop {
            if is_stopping(&self.stop) {
                return lease;
            }
            if self.spec.exclusive && lease.is_none() {
                self.statuses.update(&name, |status| status.state = State::Standby);
                tokio::select! {
                    taken = Lease::acquire(&self.db, &name) => lease = Some(taken),
                    _ = stopping(&mut self.stop) => return None,
                }
                tracing::info!(consumer = %name, "consumer active");
                lease_checked = Instant::now();
                started = false;
            }
            if let Some(held) = lease.as_mut() {
                if lease_checked.elapsed() >= LEASE_CHECK_EVERY {
                    if !held.is_held().await {
                        tracing::warn!(consumer = %name, "consumer lost its lease; waiting to take it again");
                        lease = None; // closes the old session before a new one asks
                        continue;
                    }
                    lease_checked = Instant::now();
                }
            }
            let outcome = if started {
                consumer.step().await
            } else {
                consumer.start().await.map(|()| {
                    started = true;
                    Step::Busy
                })
            };
            match outcome {
                Ok(step) => {
                    failures = 0;
                    self.statuses.update(&name, |status| {
                        status.state = State::Running;
                        status.consecutive_failures = 0;
                        status.failing_since = None;
                        status.last_success_at = Some(Utc::now());
                    });
                    if step == Step::Idle && self.idle(wake.as_mut()).await {
                        return lease;
                    }
                }
                Err(error) => {
                    failures += 1;
                    started = false;
                    let error = error_chain(&*error);
                    tracing::warn!(consumer = %name, %error, "consumer failed; will retry");
                    self.statuses.update(&name, |status| {
                        status.state = State::Failing;
                        status.failing_since.get_or_insert_with(Utc::now);
                        status.failures += 1;
                        status.consecutive_failures += 1;
                        status.last_error = Some(error);
                    });
                    let wait =
                        Duration::from_millis(100).saturating_mul(1 << (failures - 1).min(8)).min(MAX_FAILURE_BACKOFF);
                    if stopped_during(&mut self.stop, wait).await {
                        return lease;
                    }
                }
            }
        }
    }

    /// Waits for the wake-up signal (if the consumer has one), the idle
    /// interval or shutdown; true on shutdown.
    async fn idle(&mut self, wake: Option<&mut watch::Receiver<u64>>) -> bool {
        let Some(wake) = wake else {
            return stopped_during(&mut self.stop, self.spec.idle).await;
        };
        tokio::select! {
            _ = tokio::time::sleep(self.spec.idle) => {}
            woken = wake.changed() => match woken {
                Ok(()) if !self.spec.gather.is_zero() => tokio::time::sleep(self.spec.gather).await,
                Ok(()) => {}
                // The signal is gone: polling is all that is left.
                Err(_) => return stopped_during(&mut self.stop, self.spec.idle).await,
            },
            _ = stopping(&mut self.stop) => return true,
        }
        is_stopping(&self.stop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn runtime() -> (Runtime, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&format!("sqlite://{}/t.db", dir.path().display()), 2).await.unwrap();
        (Runtime::new(db), dir)
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn status(runtime: &Runtime, name: &str) -> Status {
        runtime.statuses().all().into_iter().find(|s| s.name == name).unwrap()
    }

    /// Panics on its third step in its first life; counts every step.
    struct Fragile {
        life: u32,
        steps: Arc<AtomicU32>,
    }

    impl Consumer for Fragile {
        async fn step(&mut self) -> Result<Step, ConsumerError> {
            let step = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
            if self.life == 1 && step == 3 {
                panic!("step three of the first life");
            }
            Ok(Step::Idle)
        }
    }

    #[tokio::test]
    async fn a_consumer_that_panics_is_counted_and_built_again() {
        let (mut runtime, _dir) = runtime().await;
        let (lives, steps) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (l, s) = (lives.clone(), steps.clone());
        runtime.spawn(Spec::periodic("fragile", Duration::from_millis(5)), move || Fragile {
            life: l.fetch_add(1, Ordering::SeqCst) + 1,
            steps: s.clone(),
        });
        until("a second life steps", || lives.load(Ordering::SeqCst) >= 2 && steps.load(Ordering::SeqCst) > 5).await;
        let fragile = status(&runtime, "fragile");
        assert_eq!(fragile.restarts, 1);
        assert_eq!(fragile.state, State::Running);
        assert!(fragile.last_error.unwrap().contains("step three of the first life"));
        runtime.shutdown(Duration::from_secs(5)).await;
    }

    /// Fails its first two steps, then works.
    struct Flaky(u32);

    impl Consumer for Flaky {
        async fn step(&mut self) -> Result<Step, ConsumerError> {
            self.0 += 1;
            if self.0 <= 2 {
                return Err(format!("failure {}", self.0).into());
            }
            Ok(Step::Idle)
        }
    }

    #[tokio::test]
    async fn a_failing_step_is_retried_and_reported_until_it_works() {
        let (mut runtime, _dir) = runtime().await;
        runtime.spawn(Spec::periodic("flaky", Duration::from_millis(5)), || Flaky(0));
        until("it fails", || status(&runtime, "flaky").failures >= 1).await;
        until("it recovers", || status(&runtime, "flaky").state == State::Running).await;
        let flaky = status(&runtime, "flaky");
        assert_eq!((flaky.failures, flaky.consecutive_failures, flaky.restarts), (2, 0, 0));
        assert_eq!(flaky.last_error.as_deref(), Some("failure 2"));
        runtime.shutdown(Duration::from_secs(5)).await;
    }

    /// Each step takes a while and records when it began and ended.
    struct Slow(Arc<Mutex<Vec<&'static str>>>);

    impl Consumer for Slow {
        async fn step(&mut self) -> Result<Step, ConsumerError> {
            self.0.lock().unwrap().push("began");
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.lock().unwrap().push("ended");
            Ok(Step::Busy)
        }
    }

    #[tokio::test]
    async fn shutdown_finishes_the_step_under_way_and_begins_no_other() {
        let (mut runtime, _dir) = runtime().await;
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        runtime.spawn(Spec::periodic("slow", Duration::ZERO), move || Slow(shared.clone()));
        until("a step begins", || !log.lock().unwrap().is_empty()).await;
        let statuses = runtime.statuses();
        runtime.shutdown(Duration::from_secs(5)).await;
        assert_eq!(*log.lock().unwrap(), ["began", "ended"]);
        assert_eq!(statuses.all()[0].state, State::Stopped);
    }

    /// Counts steps; always idle.
    struct Counter(Arc<AtomicU32>);

    impl Consumer for Counter {
        async fn step(&mut self) -> Result<Step, ConsumerError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Step::Idle)
        }
    }

    #[tokio::test]
    async fn a_commit_wakes_an_idle_follower_before_its_poll_interval() {
        let (mut runtime, _dir) = runtime().await;
        let steps = Arc::new(AtomicU32::new(0));
        let shared = steps.clone();
        runtime.spawn(Spec::follower("follower", Duration::from_secs(3600)), move || Counter(shared.clone()));
        until("the first step", || steps.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(steps.load(Ordering::SeqCst), 1, "idle: no step without a commit");
        keyledger_eventlog::committed_elsewhere();
        until("a commit wakes it", || steps.load(Ordering::SeqCst) == 2).await;
        runtime.shutdown(Duration::from_secs(5)).await;
    }
}
