//! The NATS JetStream relay: publishes every committed event, in log
//! order, to subject `keyledger.events.<tenantId>.<EventType>` of one
//! stream, with `Nats-Msg-Id` set to the event id.
//!
//! Delivery is at least once from the relay and exactly once in the
//! stream: the checkpoint moves only after JetStream acknowledged every
//! event before it, and an event published again after a crash carries the
//! same message id, which JetStream drops as a duplicate within the
//! stream's duplicate window. While NATS is unreachable the relay retries
//! the same event, so nothing is skipped and writes to keyledger go on.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use keyledger_eventlog::{Cursor, Database, EventLog, LoggedEvent};

use crate::runtime::{Consumer, ConsumerError, Step};

/// Every subject starts with this; the stream captures `keyledger.events.>`.
pub const SUBJECT_PREFIX: &str = "keyledger.events";
/// The relay's checkpoint and lease name.
pub const RELAY_CONSUMER: &str = "nats-relay";
const BATCH: i64 = 256;
/// How long an idle relay waits for the tail when no commit woke it.
pub const RELAY_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub nats_url: String,
    pub stream: String,
    /// How long JetStream remembers message ids; a relay down for longer
    /// than this may publish its last unacknowledged batch twice.
    pub duplicate_window: Duration,
}

/// Run exclusively (one relay per database) on the consumer runtime,
/// which retries a failed batch after a pause: while NATS is unreachable
/// the relay keeps trying the same events, and writes go on.
pub struct Relay {
    log: EventLog,
    config: RelayConfig,
    /// Kept across failures: the client reconnects by itself.
    jetstream: Option<jetstream::Context>,
    /// Where the relay has got to; read from the checkpoint at each start,
    /// then kept here (the relay is the checkpoint's only writer).
    cursor: Cursor,
}

impl Relay {
    pub fn new(db: Database, config: RelayConfig) -> Self {
        Self { log: EventLog::new(db), config, jetstream: None, cursor: Cursor::START }
    }

    /// Reads the tail through `log`, sharing the newest stretch of it with
    /// the log's other readers (see [`EventLog::tail`]) instead of reading
    /// every event from the database once more.
    pub fn with_log(self, log: EventLog) -> Self {
        Self { log, ..self }
    }

    async fn ensure_stream(&self, jetstream: &jetstream::Context) -> Result<(), RelayError> {
        jetstream
            .get_or_create_stream(stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![format!("{SUBJECT_PREFIX}.>")],
                duplicate_window: self.config.duplicate_window,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(nats("creating the stream"))
    }

    /// Publishes the next batch after `from`, then saves the checkpoint;
    /// returns how many events were relayed and where that got to.
    ///
    /// Every event of the batch is sent before the first acknowledgement
    /// is awaited, so a batch costs two round trips to NATS (the stream's
    /// last sequence, then the publishes), not one per event. Order is kept all the same: each message expects the
    /// stream's last sequence to be the one its predecessor was given, so
    /// if one is not stored, none after it is. Whatever was acknowledged
    /// is kept; the rest is sent again from there (a message JetStream
    /// already holds is dropped as a duplicate by its `Nats-Msg-Id`).
    async fn relay_batch(&self, jetstream: &jetstream::Context, from: Cursor) -> Result<(usize, Cursor), RelayError> {
        let events = self.log.tail(from, BATCH).await?;
        if events.is_empty() {
            return Ok((0, from));
        }
        let stream = jetstream.get_stream(&self.config.stream).await.map_err(nats("looking up the stream"))?;
        let stream_last = stream.cached_info().state.last_sequence;
        let mut pending = Vec::with_capacity(events.len());
        let mut failure = None;
        for (offset, event) in (0u64..).zip(&events) {
            match send(jetstream, event, stream_last + offset).await {
                Ok(ack) => pending.push(ack),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let (mut acknowledged, mut relayed, mut duplicate_seen) = (None, 0, false);
        for (event, ack) in events.iter().zip(pending) {
            match ack.await {
                Ok(ack) => {
                    acknowledged = Some(event.cursor);
                    relayed += 1;
                    duplicate_seen |= ack.duplicate;
                }
                // A duplicate doesn't move the stream's last sequence, so
                // the messages after it expected one too many: not a fault,
                // the next batch sends them again. (Any other failure here
                // shows again on that batch.)
                Err(_) if duplicate_seen => {
                    failure = None;
                    break;
                }
                Err(error) => {
                    failure = Some(nats("storing an event")(error));
                    break;
                }
            }
        }
        // Keep what JetStream did acknowledge, so a long outage doesn't
        // make the relay publish those again after the duplicate window.
        if let Some(acknowledged) = acknowledged {
            self.log.save_checkpoint(RELAY_CONSUMER, acknowledged).await?;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok((relayed, acknowledged.unwrap_or(from))),
        }
    }
}

/// Sends one event, to be stored only if the stream's last sequence is
/// `expected_last`; the returned future resolves when JetStream has
/// stored it (or reports it a duplicate, which is as good).
async fn send(
    jetstream: &jetstream::Context,
    event: &LoggedEvent,
    expected_last: u64,
) -> Result<jetstream::context::PublishAckFuture, RelayError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.event_id.as_str());
    headers.insert("Nats-Expected-Last-Sequence", expected_last.to_string().as_str());
    let payload = serde_json::to_vec(&event.envelope()).map_err(RelayError::Envelope)?;
    jetstream.publish_with_headers(subject(event), headers, payload.into()).await.map_err(nats("publishing an event"))
}

/// `keyledger.events.<tenantId>.<EventType>`, with anything a subject token
/// can't hold replaced by `_`.
pub fn subject(event: &LoggedEvent) -> String {
    let tenant = event.metadata.get("tenant_id").and_then(|t| t.as_str()).unwrap_or("unknown");
    format!("{SUBJECT_PREFIX}.{}.{}", token(tenant), token(&event.event_type))
}

fn token(raw: &str) -> String {
    let cleaned: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

impl Consumer for Relay {
    async fn start(&mut self) -> Result<(), ConsumerError> {
        let jetstream = match &self.jetstream {
            Some(jetstream) => jetstream.clone(),
            None => {
                let client = async_nats::connect(&self.config.nats_url).await.map_err(nats("connecting"))?;
                self.jetstream.insert(jetstream::new(client)).clone()
            }
        };
        // NATS may have come back without the stream.
        self.ensure_stream(&jetstream).await?;
        self.cursor = self.log.checkpoint(RELAY_CONSUMER).await?;
        tracing::info!(stream = %self.config.stream, "NATS relay active");
        Ok(())
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let jetstream = self.jetstream.clone().ok_or("not connected")?;
        match self.relay_batch(&jetstream, self.cursor).await? {
            (0, _) => Ok(Step::Idle),
            (_, reached) => {
                self.cursor = reached;
                Ok(Step::Busy)
            }
        }
    }
}

/// async-nats has an error type for each operation; they are kept whole.
type NatsError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("NATS: {context} failed")]
    Nats {
        context: &'static str,
        #[source]
        source: NatsError,
    },
    #[error("an event's envelope does not serialize")]
    Envelope(#[source] serde_json::Error),
    #[error(transparent)]
    Log(#[from] keyledger_eventlog::EventLogError),
}

/// The [`RelayError`] of NATS operation `context`.
fn nats<E: Into<NatsError>>(context: &'static str) -> impl FnOnce(E) -> RelayError {
    move |error| RelayError::Nats { context, source: error.into() }
}

#[cfg(test)]
mod tests {
    use super::{nats, token};

    #[test]
    fn subject_tokens_hold_only_safe_characters() {
        assert_eq!(token("0876-abc_1"), "0876-abc_1");
        assert_eq!(token("a.b*c>d e"), "a_b_c_d_e");
        assert_eq!(token(""), "_");
    }

    #[test]
    fn a_nats_failure_names_the_operation_and_keeps_its_cause() {
        let error = nats("connecting")(std::io::Error::other("connection refused"));
        assert_eq!(error.to_string(), "NATS: connecting failed");
        let cause = std::error::Error::source(&error).expect("the cause is kept");
        assert_eq!(cause.to_string(), "connection refused");
    }
}
