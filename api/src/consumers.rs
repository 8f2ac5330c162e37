//! What `/health` and `/metrics` say of the background consumers: each
//! one's state from the runtime, and how far behind the log it is.

use chrono::{DateTime, Utc};
use keyledger_eventlog::{Cursor, EventLogError};
use keyledger_workers::{ConsumerStatus, LICENSE_VIEW_RUNNER, MEMORY_FOLLOWER, RELAY_CONSUMER, WEBHOOK_DISPATCHER};
use serde::Serialize;

use crate::ops::OpsState;

/// Lag is counted up to this many events; past it the number is "a lot".
pub const LAG_COUNT_CAP: i64 = 100_000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerReport {
    #[serde(flatten)]
    pub status: ConsumerStatus,
    /// Events committed that it has not handled, for consumers of the tail.
    pub lag_events: Option<i64>,
    /// Age of the oldest of those events.
    pub lag_seconds: Option<f64>,
    /// Down, or further behind than the health threshold.
    pub healthy: bool,
}

/// Every consumer of this process, with the lag of those that follow the
/// log's tail (read from their checkpoints, so a standby reports the lag
/// of whichever process is active).
pub async fn report(state: &OpsState) -> Result<Vec<ConsumerReport>, EventLogError> {
    let now = Utc::now();
    let mut reports = Vec::new();
    for mut status in state.consumers.all() {
        // `/health` is open to anyone; what went wrong is in the log.
        status.last_error = None;
        let cursor = match status.name.as_str() {
            MEMORY_FOLLOWER => Some(*state.follower_progress.lock().unwrap_or_else(|p| p.into_inner())),
            LICENSE_VIEW_RUNNER | RELAY_CONSUMER => Some(state.app.log.checkpoint(&status.name).await?),
            // With NATS it reads the stream, whose lag NATS keeps.
            WEBHOOK_DISPATCHER if !state.relay_enabled => Some(state.app.log.checkpoint(&status.name).await?),
            _ => None,
        };
        let (lag_events, lag_seconds) = match cursor {
            Some(cursor) => {
                let (events, seconds) = lag(state, cursor, now).await?;
                (Some(events), Some(seconds))
            }
            None => (None, None),
        };
        let behind = lag_seconds.is_some_and(|seconds| seconds > state.health_max_lag.as_secs_f64());
        let healthy = !behind && !status.is_down(now, state.health_max_lag);
        reports.push(ConsumerReport { status, lag_events, lag_seconds, healthy });
    }
    Ok(reports)
}

async fn lag(state: &OpsState, cursor: Cursor, now: DateTime<Utc>) -> Result<(i64, f64), EventLogError> {
    let (events, oldest) = state.app.log.behind(cursor, LAG_COUNT_CAP).await?;
    let seconds = oldest
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map_or(0.0, |t| (now - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0);
    Ok((events, seconds))
}
