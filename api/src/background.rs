//! A serving process's background work, every piece of it a consumer on
//! the runtime of `keyledger_workers`, which supervises it, reports it in
//! `/health` and `/metrics`, and stops it gracefully.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_eventlog::{Checkpoints, Database};
use keyledger_projections::LicenseViews;
use keyledger_workers::{
    CommitSignal, Consumer, ConsumerError, MemoryFollower, ProjectionRunner, Relay, RelayConfig, Runtime, Spec, Step,
    COMMIT_SIGNAL, FOLLOWER_POLL, LICENSE_VIEW_RUNNER, MEMORY_FOLLOWER, RELAY_CONSUMER, RELAY_POLL, RUNNER_POLL,
};

use crate::expiry;
use crate::limits::Limits;
use crate::service::LicenseService;
use crate::signing::Directory;
use crate::state::AppState;

pub const EXPIRY_SWEEPER: &str = "expiry-sweeper";
pub const CHECKPOINTER: &str = "audit-checkpointer";
pub const DIRECTORY_REFRESH: &str = "directory-refresh";
pub const BLOCK_FOLLOWER: &str = "address-blocks";

/// What runs besides the always-on consumers.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub expiry_sweep: Option<Duration>,
    pub checkpoint_every: Option<Duration>,
    pub relay: Option<RelayConfig>,
}

/// Starts every background consumer of a serving process on `runtime`.
pub fn start(runtime: &mut Runtime, state: &AppState, settings: Settings) {
    let db = state.db.clone();
    runtime.spawn(Spec::follower(LICENSE_VIEW_RUNNER, RUNNER_POLL).exclusive(), {
        let db = db.clone();
        move || ProjectionRunner::new(db.clone())
    });
    runtime.spawn(Spec::follower(MEMORY_FOLLOWER, FOLLOWER_POLL), {
        let (db, memory, progress) = (db.clone(), state.memory.clone(), state.follower_progress.clone());
        move || MemoryFollower::resume(db.clone(), memory.clone(), progress.clone())
    });
    if let Some(relay) = settings.relay {
        let db = db.clone();
        runtime.spawn(Spec::follower(RELAY_CONSUMER, RELAY_POLL).exclusive(), move || {
            Relay::new(db.clone(), relay.clone())
        });
    }
    if let Database::Postgres(pool) = &db {
        let pool = pool.clone();
        runtime.spawn(Spec::periodic(COMMIT_SIGNAL, Duration::ZERO), move || CommitSignal::new(pool.clone()));
    }
    if let Some(interval) = settings.expiry_sweep {
        let (licenses, views) = (state.licenses.clone(), state.views.clone());
        runtime.spawn(Spec::periodic(EXPIRY_SWEEPER, interval).exclusive(), move || ExpirySweeper {
            licenses: licenses.clone(),
            views: views.clone(),
        });
    }
    if let Some(interval) = settings.checkpoint_every {
        let checkpoints = state.checkpoints.clone();
        // The first checkpoint comes after a full interval, so restarts
        // don't add one each.
        let first = Instant::now() + interval;
        runtime.spawn(Spec::periodic(CHECKPOINTER, interval).exclusive(), move || Checkpointer {
            checkpoints: checkpoints.clone(),
            interval,
            next: first,
        });
    }
    let directory = state.directory.clone();
    runtime.spawn(Spec::periodic(DIRECTORY_REFRESH, Duration::from_secs(1)), move || DirectoryRefresh(directory.clone()));
    if state.limits.enabled() {
        let limits = state.limits.clone();
        runtime.spawn(Spec::periodic(BLOCK_FOLLOWER, Duration::from_secs(1)), move || BlockFollower(limits.clone()));
    }
}

/// Records `LicenseExpired` for licenses past their expiry.
struct ExpirySweeper {
    licenses: Arc<LicenseService>,
    views: LicenseViews,
}

impl Consumer for ExpirySweeper {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let expired = expiry::sweep(&self.licenses, &self.views).await?;
        if expired > 0 {
            tracing::info!(expired, "expiry sweep recorded expired licenses");
        }
        Ok(if expired >= expiry::BATCH as usize { Step::Busy } else { Step::Idle })
    }
}

/// Signs an audit checkpoint every interval.
struct Checkpointer {
    checkpoints: Checkpoints,
    interval: Duration,
    next: Instant,
}

impl Consumer for Checkpointer {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        if Instant::now() < self.next {
            return Ok(Step::Idle);
        }
        if let Some(checkpoint) = self.checkpoints.create(chrono::Utc::now()).await? {
            tracing::info!(position = checkpoint.body.cursor.position, "audit checkpoint signed");
        }
        self.next = Instant::now() + self.interval;
        Ok(Step::Idle)
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

/// Learns of address blocks recorded by other processes.
struct BlockFollower(Arc<Limits>);

impl Consumer for BlockFollower {
    async fn step(&mut self) -> Result<Step, ConsumerError> {
        self.0.poll_blocks().await?;
        Ok(Step::Idle)
    }
}
