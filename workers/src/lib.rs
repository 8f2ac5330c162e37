//! Consumers of the event log that run beside the API: the projection
//! runner that keeps read models equal to the log, and the NATS JetStream
//! relay.
//!
//! Each follows the log's tail from a saved checkpoint, hands events on,
//! and only then moves its checkpoint, so a crash repeats work rather than
//! losing it. Where several processes share a database, a lease makes one
//! of them the active consumer.

mod feed;
mod lease;
mod memory_follower;
mod projector;
mod relay;

pub use feed::{Feed, FeedError, NatsFeed, TailFeed};
pub use lease::Lease;
pub use memory_follower::MemoryFollower;
pub use projector::{ProjectionRunner, ProjectorError, LICENSE_VIEW_RUNNER};
pub use relay::{Relay, RelayConfig, RELAY_CONSUMER, SUBJECT_PREFIX};
