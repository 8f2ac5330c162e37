//! Executing license commands: load, decide, append, project — retried
//! when another writer got to the same license first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use keyledger_domain::{License, LicenseCommand, LicenseError};
use keyledger_eventlog::{LicenseEventStore, Snapshots};
use keyledger_projections::{LicenseViews, MemoryView};
use rand::Rng;

use crate::error::ApiError;

/// Attempts before a command gives up with 503. Each lost race means
/// another command on the same license committed, so this bounds how long
/// one request can be starved, not how many writers may race.
const MAX_ATTEMPTS: u32 = 12;
/// Retries of a read-model update after its events were committed.
const PROJECTION_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(#[from] LicenseError),
    #[error("gave up after {MAX_ATTEMPTS} attempts lost to concurrent writers")]
    Contended,
    #[error("event store: {0}")]
    Store(String),
    #[error("read model: {0}")]
    Projection(#[from] keyledger_projections::ProjectionError),
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Refused(refusal) => ApiError::refused(refusal),
            CommandError::Contended => ApiError::contended(),
            other => ApiError::internal(other),
        }
    }
}

pub struct LicenseService {
    store: LicenseEventStore,
    snapshots: Snapshots,
    views: LicenseViews,
    memory: Arc<MemoryView>,
}

impl LicenseService {
    pub fn new(store: LicenseEventStore, snapshots: Snapshots, views: LicenseViews, memory: Arc<MemoryView>) -> Self {
        Self { store, snapshots, views, memory }
    }

    /// Runs `command` against the license and returns the license as the
    /// command left it. The read model is updated before this returns, so
    /// a caller's next read sees its write.
    pub async fn execute(
        &self,
        license_id: &str,
        command: LicenseCommand,
        metadata: HashMap<String, String>,
    ) -> Result<License, CommandError> {
        for attempt in 0..MAX_ATTEMPTS {
            // From the snapshot: cost bounded by the events since it.
            let mut context = self.snapshots.load(license_id).await.map_err(|e| CommandError::Store(e.to_string()))?;
            let previous_version = context.current_sequence as i64;
            let sink = EventSink::default();
            context.aggregate.handle(command.clone(), &(), &sink).await?;
            let events = sink.collect().await;
            // The sink has applied the new events already: this is the
            // license after the command.
            let license = context.aggregate.clone();
            if events.is_empty() {
                // Nothing to append, but the read model may still be behind
                // if an earlier projection failed: a client retrying its
                // request is what heals it. `apply` never moves a row back.
                if license.exists() {
                    self.project(&license, context.current_sequence as i64).await?;
                    self.memory.put(license.clone(), context.current_sequence as i64);
                }
                return Ok(license);
            }
            let version = (context.current_sequence + events.len()) as i64;
            match self.store.commit(events, context, metadata.clone()).await {
                Ok(_) => {
                    self.project(&license, version).await?;
                    self.memory.put(license.clone(), version);
                    if let Err(error) = self.snapshots.maybe_save(&license, previous_version, version).await {
                        // Only loading gets slower without it.
                        tracing::warn!(license_id, %error, "snapshot not saved");
                    }
                    return Ok(license);
                }
                Err(AggregateError::AggregateConflict) => backoff(attempt).await,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(CommandError::Contended)
    }
}

impl LicenseService {
    /// The license as its events say it is now, and its version, bypassing
    /// the read model: for confirming a refusal before it reaches a paying
    /// customer. The in-memory view learns what was loaded.
    pub async fn load(&self, license_id: &str) -> Result<(License, i64), CommandError> {
        let context = self.snapshots.load(license_id).await.map_err(|e| CommandError::Store(e.to_string()))?;
        let version = context.current_sequence as i64;
        if context.aggregate.exists() {
            self.memory.put(context.aggregate.clone(), version);
        }
        Ok((context.aggregate, version))
    }

    /// Rewrites the read-model row from a license just loaded from the log,
    /// when a reader found the row behind it.
    pub async fn mend_view(&self, license: &License, version: i64) -> Result<(), CommandError> {
        Ok(self.views.rewrite(license, version).await?)
    }

    /// Records the license in the read model, retrying a transient failure
    /// (a busy SQLite, an exhausted pool) so the write that was just
    /// committed is readable when the client hears of it.
    async fn project(&self, license: &License, version: i64) -> Result<(), CommandError> {
        let mut attempt = 0;
        loop {
            match self.views.apply(license, version).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < PROJECTION_ATTEMPTS => {
                    tracing::warn!(license_id = %license.id, %error, "read model update failed; retrying");
                    attempt += 1;
                    backoff(attempt + 2).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Loads each license from its events and records it in the read
    /// model at its last sequence.
    async fn reproject(&self, license_ids: &[String]) -> Result<usize, CommandError> {
        let mut reprojected = 0;
        for license_id in license_ids {
            // One license that can't be projected must not keep every other
            // license stale, nor the server from starting.
            match self.reproject_one(license_id).await {
                Ok(()) => reprojected += 1,
                Err(error) => tracing::error!(%license_id, %error, "cannot re-project license; skipped"),
            }
        }
        Ok(reprojected)
    }

    async fn reproject_one(&self, license_id: &str) -> Result<(), CommandError> {
        let (license, version) = self.load(license_id).await?;
        if license.exists() {
            self.mend_view(&license, version).await?;
        }
        Ok(())
    }

    /// Re-projects licenses whose read model fell behind their log, as a
    /// crash between append and projection leaves them. Run at start-up.
    pub async fn catch_up_views(&self) -> Result<usize, CommandError> {
        let stale = self.views.stale_license_ids().await?;
        self.reproject(&stale).await
    }
}

fn store_error(error: AggregateError<LicenseError>) -> CommandError {
    match error {
        AggregateError::UserError(refusal) => CommandError::Refused(refusal),
        AggregateError::AggregateConflict => CommandError::Contended,
        other => CommandError::Store(other.to_string()),
    }
}

/// Jittered exponential backoff, capped at ~64 ms, so racing writers spread
/// out instead of colliding again in lock step.
async fn backoff(attempt: u32) {
    let ceiling_ms = 1u64 << attempt.min(6);
    let wait = rand::thread_rng().gen_range(0..=ceiling_ms * 1000);
    tokio::time::sleep(Duration::from_micros(wait)).await;
}
