//! One interface for every consumer of license events, whether it reads
//! the log's tail directly (the embedded default) or a durable JetStream
//! consumer (with NATS). Both deliver the same envelopes
//! ([`LoggedEvent::envelope`](keyledger_eventlog::LoggedEvent::envelope)) in
//! the same order, and both redeliver what was not acknowledged.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, Message};
use futures::StreamExt;
use keyledger_app::client::error_chain;
use keyledger_eventlog::{Cursor, EventLog};
use serde_json::Value;

/// async-nats has an error type for each operation; they are kept whole.
type NatsError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Log(#[from] keyledger_eventlog::EventLogError),
    #[error("NATS: {context} failed")]
    Nats {
        context: &'static str,
        #[source]
        source: NatsError,
    },
    #[error("a message of the stream is not an event envelope")]
    NotAnEnvelope(#[source] serde_json::Error),
}

/// The [`FeedError`] of NATS operation `context`.
fn nats<E: Into<NatsError>>(context: &'static str) -> impl FnOnce(E) -> FeedError {
    move |error| FeedError::Nats { context, source: error.into() }
}

/// Events in log order for one named consumer, which remembers how far
/// that consumer got across restarts.
pub trait Feed: Send {
    /// Up to `max` envelopes after the last acknowledged batch; empty when
    /// there is nothing new right now. After a restart without `ack`, the
    /// same envelopes come again, so consumers must be idempotent by
    /// `eventId`.
    /// Envelopes are shared (`Arc`): on the tail, every consumer of the
    /// process gets the same one.
    fn next_batch(&mut self, max: usize) -> impl Future<Output = Result<Vec<Arc<Value>>, FeedError>> + Send;

    /// Marks everything returned so far as handled. It may be recorded a
    /// moment later (see [`TailFeed`]); after a crash the unrecorded part
    /// comes again.
    fn ack(&mut self) -> impl Future<Output = Result<(), FeedError>> + Send;

    /// Records every acknowledgement now: on a graceful stop.
    fn flush(&mut self) -> impl Future<Output = Result<(), FeedError>> + Send {
        async { Ok(()) }
    }
}

/// Where a consumer reads events from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The log's tail, with the consumer's checkpoint in the database.
    Tail(EventLog),
    /// A durable consumer of the relay's JetStream stream.
    Nats { url: String, stream: String, ack_wait: Duration },
}

/// The feed a [`Source`] gives.
pub enum AnyFeed {
    Tail(TailFeed),
    Nats(Box<NatsFeed>),
}

impl AnyFeed {
    /// A fresh feed for consumer `name`: whatever was handed over before
    /// and not acknowledged comes again.
    pub async fn open(source: &Source, name: &str) -> Result<Self, FeedError> {
        Ok(match source {
            Source::Tail(log) => AnyFeed::Tail(TailFeed::new(log.clone(), name)),
            Source::Nats { url, stream, ack_wait } => {
                AnyFeed::Nats(Box::new(NatsFeed::open(url, stream, name, *ack_wait).await?))
            }
        })
    }
}

impl Feed for AnyFeed {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Value>>, FeedError> {
        match self {
            AnyFeed::Tail(feed) => feed.next_batch(max).await,
            AnyFeed::Nats(feed) => feed.next_batch(max).await,
        }
    }

    async fn ack(&mut self) -> Result<(), FeedError> {
        match self {
            AnyFeed::Tail(feed) => feed.ack().await,
            AnyFeed::Nats(feed) => feed.ack().await,
        }
    }

    async fn flush(&mut self) -> Result<(), FeedError> {
        match self {
            AnyFeed::Tail(feed) => feed.flush().await,
            AnyFeed::Nats(feed) => feed.flush().await,
        }
    }
}

/// Records a stopping consumer's acknowledgements; a failure only means
/// the last of its events are read again after the restart.
pub async fn flush(feed: Option<&mut AnyFeed>, consumer: &str) {
    if let Some(feed) = feed {
        if let Err(error) = feed.flush().await {
            tracing::warn!(
                consumer,
                error = %error_chain(&error),
                "checkpoint not recorded at shutdown; its last events come again"
            );
        }
    }
}

/// The log's tail, with the consumer's checkpoint in the database.
///
/// Under load a consumer acknowledges a batch every few milliseconds; the
/// checkpoint is written at most every [`CHECKPOINT_EVERY`] (each write is
/// a commit), and at once on [`Feed::flush`]. The consumers of a feed are
/// idempotent by event id, so what a crash leaves unrecorded is read and
/// handled again, never lost.
pub struct TailFeed {
    log: EventLog,
    name: String,
    /// Where the next batch starts: past everything returned so far.
    read_to: Option<Cursor>,
    /// Acknowledged and not yet written.
    unsaved: Option<Cursor>,
    saved_at: Option<Instant>,
}

/// How often a tail feed writes its checkpoint at most.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

impl TailFeed {
    pub fn new(log: EventLog, name: impl Into<String>) -> Self {
        Self { log, name: name.into(), read_to: None, unsaved: None, saved_at: None }
    }
}

impl Feed for TailFeed {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Value>>, FeedError> {
        let from = match self.read_to {
            Some(cursor) => cursor,
            None => self.log.checkpoint(&self.name).await?,
        };
        // Kept from now on even while nothing follows it, so an idle feed
        // doesn't read its checkpoint at every poll.
        self.read_to = Some(from);
        let events = self.log.tail_envelopes(from, max as i64).await?;
        match events.last() {
            Some((last, _)) => self.read_to = Some(*last),
            // Caught up: no load to spare a write for, and the checkpoint
            // should say where the consumer is.
            None => self.flush().await?,
        }
        Ok(events.into_iter().map(|(_, envelope)| envelope).collect())
    }

    async fn ack(&mut self) -> Result<(), FeedError> {
        self.unsaved = self.read_to;
        if self.saved_at.is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY) {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), FeedError> {
        if let Some(cursor) = self.unsaved.take() {
            self.log.save_checkpoint(&self.name, cursor).await?;
            self.saved_at = Some(Instant::now());
        }
        Ok(())
    }
}

/// A durable pull consumer of the relay's stream.
pub struct NatsFeed {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    unacked: Vec<Message>,
    wait: Duration,
}

impl NatsFeed {
    /// Creates (or reopens) durable consumer `name` on `stream`. Messages
    /// not acknowledged within `ack_wait` are delivered again.
    pub async fn open(nats_url: &str, stream: &str, name: &str, ack_wait: Duration) -> Result<Self, FeedError> {
        let client = async_nats::connect(nats_url).await.map_err(nats("connecting"))?;
        let stream = jetstream::new(client).get_stream(stream).await.map_err(nats("looking up the stream"))?;
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        };
        let consumer =
            stream.get_or_create_consumer(name, config).await.map_err(nats("creating the durable consumer"))?;
        Ok(Self { consumer, unacked: Vec::new(), wait: Duration::from_millis(250) })
    }
}

impl Feed for NatsFeed {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Value>>, FeedError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(self.wait)
            .messages()
            .await
            .map_err(nats("fetching a batch"))?;
        // The batch is handed over whole or not at all: a message taken
        // here but never returned must not be acknowledged by a later
        // `ack`, so on an error it stays unacknowledged and comes again.
        let (mut envelopes, mut messages) = (Vec::new(), Vec::new());
        while let Some(message) = batch.next().await {
            let message = message.map_err(nats("receiving a message"))?;
            let envelope: Value = serde_json::from_slice(&message.payload).map_err(FeedError::NotAnEnvelope)?;
            envelopes.push(Arc::new(envelope));
            messages.push(message);
        }
        self.unacked.extend(messages);
        Ok(envelopes)
    }

    async fn ack(&mut self) -> Result<(), FeedError> {
        for message in self.unacked.drain(..) {
            message.ack().await.map_err(nats("acknowledging a message"))?;
        }
        Ok(())
    }
}
