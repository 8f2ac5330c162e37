//! Consumers of the event log that run beside the API, all on one
//! consumer runtime ([`Runtime`]): the projection runner that keeps read
//! models equal to the log, the memory follower that keeps this process's
//! validation view fresh, the NATS JetStream relay, and the commit signal
//! that wakes the consumers of other processes, webhook delivery and the
//! anomaly detector.
//!
//! Each follows the log's tail from a saved checkpoint, hands events on,
//! and only then moves its checkpoint, so a crash repeats work rather than
//! losing it. Where several processes share a database, a lease makes one
//! of them the active consumer.

mod anomalies;
mod call_reports;
mod commit_signal;
mod feed;
mod lease;
mod memory_follower;
mod periodic;
mod projector;
mod relay;
mod resources;
pub mod runtime;
mod usage;
mod webhooks;

pub use anomalies::{AnomalyWorker, ANOMALY_DETECTOR, DETECTOR_ACK_WAIT};
pub use call_reports::{CallReporter, CALL_REPORTER};
pub use commit_signal::{CommitSignal, COMMIT_SIGNAL};
pub use feed::{AnyFeed, Feed, FeedError, NatsFeed, Source as FeedSource, TailFeed};
pub use lease::Lease;
pub use memory_follower::{load_views, MemoryFollower, FOLLOWER_POLL, MEMORY_FOLLOWER};
pub use periodic::{Checkpointer, ExpirySweeper, HeartbeatSweeper, CHECKPOINTER, EXPIRY_SWEEPER, HEARTBEAT_SWEEPER};
pub use projector::{ProjectionRunner, ProjectorError, LICENSE_VIEW_RUNNER, RUNNER_POLL};
pub use relay::{Relay, RelayConfig, RELAY_CONSUMER, RELAY_POLL, SUBJECT_PREFIX};
pub use resources::{ResourceReleaser, RESOURCE_RELEASER};
pub use runtime::{
    Consumer, ConsumerError, Runtime, Spec, State as ConsumerState, Status as ConsumerStatus, Statuses, Step,
};
pub use usage::{UsageWriter, USAGE_WRITER};
pub use webhooks::{
    start_dispatching_at_end_if_new, Dispatcher as WebhookDispatcher, Lanes as WebhookLanes, Sender as WebhookSender,
    ENDPOINT_IN_FLIGHT, WEBHOOK_DISPATCHER, WEBHOOK_SENDER,
};
