//! What `/health` and `/metrics` say of the background consumers: each
//! one's state from the runtime, and how far behind the log it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyledger_eventlog::{Cursor, EventLog, EventLogError};
use keyledger_http::state::{ConsumerHealth, UnhealthyConsumer};
use keyledger_workers::{
    ConsumerStatus, Statuses, LICENSE_VIEW_RUNNER, MEMORY_FOLLOWER, RELAY_CONSUMER, WEBHOOK_DISPATCHER,
};
use serde::Serialize;

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

/// What the consumers' health is read from: their statuses in this
/// process, the memory follower's progress, and the others' checkpoints
/// in the log. `/health`, `/metrics` and (through [`ConsumerHealth`]) the
/// dialects read it.
pub struct ConsumerProbe {
    pub statuses: Arc<Statuses>,
    /// This process's validation view, loaded in the background at start.
    pub validation_view: Arc<keyledger_projections::MemoryView>,
    pub follower_progress: Arc<Mutex<Cursor>>,
    pub log: EventLog,
    /// Whether this process runs a NATS relay (whose lag is reported).
    pub relay_enabled: bool,
    /// Past this lag (or this long failing) a consumer is unhealthy.
    pub max_lag: Duration,
    /// The last answer of [`ConsumerHealth::unhealthy`] and when it was
    /// made: pages and statistics that show it are asked for far more
    /// often than health changes, and on PostgreSQL each answer reads
    /// every consumer's lag from the log.
    pub unhealthy_cache: Mutex<Option<(std::time::Instant, Vec<UnhealthyConsumer>)>>,
}

/// How long an answer of [`ConsumerHealth::unhealthy`] is reused.
const UNHEALTHY_REUSED_FOR: Duration = Duration::from_secs(2);

impl ConsumerProbe {
    /// Every consumer of this process, with the lag of those that follow
    /// the log's tail (read from their checkpoints, so a standby reports
    /// the lag of whichever process is active).
    pub async fn report(&self) -> Result<Vec<ConsumerReport>, EventLogError> {
        let now = Utc::now();
        let mut reports = Vec::new();
        for mut status in self.statuses.all() {
            // `/health` is open to anyone; what went wrong is in the log.
            status.last_error = None;
            let cursor = match status.name.as_str() {
                MEMORY_FOLLOWER => Some(*self.follower_progress.lock().unwrap_or_else(|p| p.into_inner())),
                LICENSE_VIEW_RUNNER | RELAY_CONSUMER => Some(self.log.checkpoint(&status.name).await?),
                // With NATS it reads the stream, whose lag NATS keeps.
                WEBHOOK_DISPATCHER if !self.relay_enabled => Some(self.log.checkpoint(&status.name).await?),
                _ => None,
            };
            let (lag_events, lag_seconds) = match cursor {
                Some(cursor) => {
                    let (events, seconds) = self.lag(cursor, now).await?;
                    (Some(events), Some(seconds))
                }
                None => (None, None),
            };
            let behind = lag_seconds.is_some_and(|seconds| seconds > self.max_lag.as_secs_f64());
            let healthy = !behind && !status.is_down(now, self.max_lag);
            reports.push(ConsumerReport { status, lag_events, lag_seconds, healthy });
        }
        Ok(reports)
    }

    async fn lag(&self, cursor: Cursor, now: DateTime<Utc>) -> Result<(i64, f64), EventLogError> {
        let (events, oldest) = self.log.behind(cursor, LAG_COUNT_CAP).await?;
        let seconds = oldest
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map_or(0.0, |t| (now - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0);
        Ok((events, seconds))
    }
}

impl ConsumerHealth for ConsumerProbe {
    fn unhealthy(&self) -> Pin<Box<dyn Future<Output = Result<Vec<UnhealthyConsumer>, EventLogError>> + Send + '_>> {
        Box::pin(async move {
            if let Some((made, answer)) = &*self.unhealthy_cache.lock().unwrap_or_else(|p| p.into_inner()) {
                if made.elapsed() < UNHEALTHY_REUSED_FOR {
                    return Ok(answer.clone());
                }
            }
            let now = Utc::now();
            let answer: Vec<UnhealthyConsumer> = self
                .report()
                .await?
                .into_iter()
                .filter(|report| !report.healthy)
                .map(|report| {
                    let status = &report.status;
                    let (reason, since) = match report.lag_seconds {
                        Some(seconds) if !status.is_down(now, self.max_lag) => (
                            format!("{:.0} s behind the log ({} events)", seconds, report.lag_events.unwrap_or(0)),
                            Some(now - chrono::Duration::milliseconds((seconds * 1000.0) as i64)),
                        ),
                        _ => (
                            format!("{:?}", status.state).to_lowercase(),
                            status.failing_since.or(status.last_success_at),
                        ),
                    };
                    UnhealthyConsumer { name: status.name.clone(), reason, since }
                })
                .collect();
            *self.unhealthy_cache.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), answer.clone()));
            Ok(answer)
        })
    }
}
