//! A serving process's background work, every piece of it a consumer on
//! the runtime of `keyledger_workers`, which supervises it, reports it in
//! `/health` and `/metrics`, and stops it gracefully.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_app::webhooks::RetryPolicy;
use keyledger_eventlog::Database;
use keyledger_workers::{
    AnomalyWorker, CallReporter, Checkpointer, CommitSignal, Consumer, ConsumerError, ExpirySweeper, FeedSource,
    HeartbeatSweeper, MemoryFollower, ProjectionRunner, Relay, RelayConfig, ResourceReleaser, Runtime, Spec, Step,
    UsageWriter, WebhookDispatcher, WebhookLanes, WebhookSender, ANOMALY_DETECTOR, CALL_REPORTER, CHECKPOINTER,
    COMMIT_SIGNAL, DETECTOR_ACK_WAIT, EXPIRY_SWEEPER, FOLLOWER_POLL, HEARTBEAT_SWEEPER, LICENSE_VIEW_RUNNER,
    MEMORY_FOLLOWER, RELAY_CONSUMER, RELAY_POLL, RESOURCE_RELEASER, RUNNER_POLL, USAGE_WRITER, WEBHOOK_DISPATCHER,
    WEBHOOK_SENDER,
};

use crate::limits::Limits;
use crate::ops::OpsState;
use keyledger_app::signing::Directory;

pub const DIRECTORY_REFRESH: &str = "directory-refresh";
pub const BLOCK_FOLLOWER: &str = "address-blocks";
/// How often the usage counted in memory is written: the panel's charts
/// lag the calls by this much at most.
const USAGE_WRITE_EVERY: Duration = Duration::from_secs(5);

/// What runs besides the always-on consumers.
#[derive(Debug, Clone)]
pub struct Settings {
    pub expiry_sweep: Option<Duration>,
    pub heartbeat_sweep: Option<Duration>,
    pub checkpoint_every: Option<Duration>,
    pub relay: Option<RelayConfig>,
    pub retry_policy: RetryPolicy,
    /// Whether this process dispatches and sends webhooks.
    pub webhook_delivery: bool,
    /// Whether this process runs the anomaly detector.
    pub anomaly_detection: bool,
}

/// How long the webhook sender waits for due deliveries when nothing in
/// this process queued one (retries coming due, other processes' queues).
const SENDER_POLL: Duration = Duration::from_millis(250);
/// How long the projection runner lets commits gather once woken. Commands
/// write their own rows, so it is the view's safety net, not its fast path:
/// each of its steps is a transaction (its checkpoint), and under write
/// load one every few milliseconds competed with the commands' own.
const RUNNER_GATHER: Duration = Duration::from_millis(50);
/// The same for the webhook dispatcher and the anomaly detector: each
/// dispatch is a transaction (the deliveries), and a webhook's first
/// attempt may come this much later for it (the target is under 500 ms).
const FAN_OUT_GATHER: Duration = Duration::from_millis(20);
/// How long NATS waits for the dispatcher to acknowledge a message
/// before handing it over again.
const DISPATCH_ACK_WAIT: Duration = Duration::from_secs(30);

/// Starts every background consumer of a serving process on `runtime`.
pub fn start(runtime: &mut Runtime, state: &OpsState, settings: Settings) {
    let db = state.db.clone();
    // Every follower of the tail reads it through the state's log, which
    // reads each event from the database once for all of them.
    let log = state.app.log.clone();
    runtime.spawn(Spec::follower(LICENSE_VIEW_RUNNER, RUNNER_POLL).exclusive().gathering(RUNNER_GATHER), {
        let (db, log) = (db.clone(), log.clone());
        move || ProjectionRunner::new(db.clone()).with_log(log.clone())
    });
    runtime.spawn(Spec::follower(MEMORY_FOLLOWER, FOLLOWER_POLL), {
        let (db, memory, progress) = (db.clone(), state.memory.clone(), state.consumers.follower_progress.clone());
        let log = log.clone();
        move || MemoryFollower::resume(db.clone(), memory.clone(), progress.clone()).with_log(log.clone())
    });
    if settings.webhook_delivery {
        start_webhooks(runtime, state, &settings);
    }
    if settings.anomaly_detection {
        start_anomaly_detector(runtime, state, &settings);
    }
    start_resource_releaser(runtime, state, &settings);
    if let Some(relay) = settings.relay {
        let (db, log) = (db.clone(), log.clone());
        runtime.spawn(Spec::follower(RELAY_CONSUMER, RELAY_POLL).exclusive(), move || {
            Relay::new(db.clone(), relay.clone()).with_log(log.clone())
        });
    }
    if let Database::Postgres(pool) = &db {
        let pool = pool.clone();
        runtime.spawn(Spec::periodic(COMMIT_SIGNAL, Duration::ZERO), move || CommitSignal::new(pool.clone()));
    }
    if let Some(interval) = settings.expiry_sweep {
        let (licenses, views) = (state.app.licenses.clone(), state.app.views.clone());
        runtime.spawn(Spec::periodic(EXPIRY_SWEEPER, interval).exclusive(), move || {
            ExpirySweeper::new(licenses.clone(), views.clone())
        });
    }
    if let Some(interval) = settings.heartbeat_sweep {
        let (licenses, views) = (state.app.licenses.clone(), state.app.views.clone());
        // Not exclusive: each process sweeps, and the log records each
        // death once.
        runtime.spawn(Spec::periodic(HEARTBEAT_SWEEPER, interval), move || {
            HeartbeatSweeper::new(licenses.clone(), views.clone())
        });
    }
    if let Some(interval) = settings.checkpoint_every {
        let checkpoints = state.app.checkpoints.clone();
        // The first checkpoint comes after a full interval, so restarts
        // don't add one each.
        let first = Instant::now() + interval;
        runtime.spawn(Spec::periodic(CHECKPOINTER, interval).exclusive(), move || {
            Checkpointer::new(checkpoints.clone(), interval, first)
        });
    }
    // Waits for the client calls' reports, with a slow poll as a net.
    let (reports, licenses) = (state.call_reports.clone(), state.app.licenses.clone());
    runtime.spawn(Spec::periodic(CALL_REPORTER, Duration::from_secs(1)).woken_by(reports.signal()), move || {
        CallReporter::new(reports.clone(), licenses.clone())
    });
    // Not exclusive: each process writes the usage it counted.
    let (counts, usage) = (state.usage_counts.clone(), state.app.usage.clone());
    runtime.spawn(Spec::periodic(USAGE_WRITER, USAGE_WRITE_EVERY), move || {
        UsageWriter::new(counts.clone(), usage.clone())
    });
    let directory = state.app.directory.clone();
    runtime
        .spawn(Spec::periodic(DIRECTORY_REFRESH, Duration::from_secs(1)), move || DirectoryRefresh(directory.clone()));
    if state.limits.enabled() {
        let limits = state.limits.clone();
        runtime.spawn(Spec::periodic(BLOCK_FOLLOWER, Duration::from_secs(1)), move || BlockFollower(limits.clone()));
    }
}

/// Reloads the cached keys and settings whenever another process changed
/// them; one cheap read a second.
struct DirectoryRefresh(Arc<Directory>);

impl Consumer for DirectoryRefresh {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        self.0.refresh().await?;
        Ok(Step::Idle)
    }
}

/// Learns of address and route blocks recorded by other processes.
struct BlockFollower(Arc<Limits>);

impl Consumer for BlockFollower {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        self.0.poll_blocks().await?;
        Ok(Step::Idle)
    }
}

/// The webhook dispatcher (one per database) and sender (every process).
fn start_webhooks(runtime: &mut Runtime, state: &OpsState, settings: &Settings) {
    let source = feed_source(state, settings, DISPATCH_ACK_WAIT);
    let lanes = WebhookLanes::default();
    let (store, log, policy) = (state.app.webhooks.store.clone(), state.app.log.clone(), settings.retry_policy.clone());
    let (allow_private, metrics) = (state.app.webhooks.allow_private, state.app.metrics.clone());
    runtime.spawn(Spec::follower(WEBHOOK_DISPATCHER, RUNNER_POLL).exclusive().gathering(FAN_OUT_GATHER), {
        let (lanes, metrics) = (lanes.clone(), metrics.clone());
        move || {
            let (source, store, log) = (source.clone(), store.clone(), log.clone());
            WebhookDispatcher::new(source, store, log, policy.clone(), allow_private, metrics.clone(), lanes.clone())
                .expect("the webhook HTTP client builds")
        }
    });
    let (store, policy) = (state.app.webhooks.store.clone(), settings.retry_policy.clone());
    let sender = Spec::periodic(WEBHOOK_SENDER, SENDER_POLL).woken_by(keyledger_app::webhooks::queued());
    runtime.spawn(sender, move || {
        WebhookSender::new(store.clone(), policy.clone(), allow_private, metrics.clone(), lanes.clone())
            .expect("the webhook HTTP client builds")
    });
}

/// The relay's stream when there is one, else the log's tail.
fn feed_source(state: &OpsState, settings: &Settings, ack_wait: Duration) -> FeedSource {
    match &settings.relay {
        Some(relay) => FeedSource::Nats { url: relay.nats_url.clone(), stream: relay.stream.clone(), ack_wait },
        None => FeedSource::Tail(state.app.log.clone()),
    }
}

/// The resource releaser, one per database: a suspended or deleted
/// license lets its resources go, whichever API or worker suspended it.
fn start_resource_releaser(runtime: &mut Runtime, state: &OpsState, settings: &Settings) {
    let source = feed_source(state, settings, DETECTOR_ACK_WAIT);
    let resources = state.app.resources.clone();
    runtime.spawn(Spec::follower(RESOURCE_RELEASER, RUNNER_POLL).exclusive().gathering(FAN_OUT_GATHER), move || {
        ResourceReleaser::new(source.clone(), resources.clone())
    });
}

/// The anomaly detector, one per database.
fn start_anomaly_detector(runtime: &mut Runtime, state: &OpsState, settings: &Settings) {
    let source = feed_source(state, settings, DETECTOR_ACK_WAIT);
    let (log, licenses, cache) =
        (state.app.log.clone(), state.app.licenses.clone(), state.app.anomaly_settings.clone());
    runtime.spawn(Spec::follower(ANOMALY_DETECTOR, RUNNER_POLL).exclusive().gathering(FAN_OUT_GATHER), move || {
        AnomalyWorker::new(source.clone(), log.clone(), licenses.clone(), cache.clone())
    });
}
