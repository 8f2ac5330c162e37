//! A license's history read back: its state as it stood at an instant,
//! replayed from its events (the audit's "state at" and the panel's
//! timeline both ask this).

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyledger_domain::{License, LicenseEvent};
use keyledger_eventlog::{EventLog, EventLogError, LoggedEvent};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("event {0} has no occurred_at")]
    Undated(String),
    #[error("event {event_id} does not read as a license event")]
    Unreadable {
        event_id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The license as its events up to `at` made it, with the sequence of the
/// last of them; `None` when it did not exist yet.
pub fn replay_until(events: &[LoggedEvent], at: DateTime<Utc>) -> Result<Option<(License, i64)>, HistoryError> {
    let mut license = License::default();
    let mut version = 0;
    for event in events {
        let occurred_at = event.occurred_at().ok_or_else(|| HistoryError::Undated(event.event_id.clone()))?;
        if occurred_at > at {
            break;
        }
        version = event.sequence;
        let payload: LicenseEvent = serde_json::from_value(event.payload.clone())
            .map_err(|source| HistoryError::Unreadable { event_id: event.event_id.clone(), source })?;
        license.apply(payload);
    }
    Ok(license.exists().then_some((license, version)))
}

/// [`replay_until`] over the license's whole history, read from the log.
pub async fn state_at(
    log: &EventLog,
    license_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<(License, i64)>, HistoryError> {
    let events = log.history(license_id, 0, i64::MAX).await?;
    replay_until(&events, at)
}
