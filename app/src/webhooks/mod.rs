//! Webhooks: tenants' endpoints, the event names they subscribe to, the
//! Standard Webhooks signature, what URLs may be called, and the durable
//! record of deliveries (batch rows for those that succeeded at once, a row
//! each for the rest) with its retry policy. The consumers that send and
//! retry are in `keyledger_workers`.

mod delivery_log;
mod dispatched;
pub mod fields;
pub mod names;
pub mod policy;
pub mod safety;
pub mod signature;
pub mod store;

pub use dispatched::Dispatched;
pub use names::{matches, valid_pattern, webhook_name, TEST_EVENT};
pub use policy::{Outcome, RetryPolicy};
pub use safety::{check_url, SafeResolver, UrlError};
pub use store::{
    payload, queued, queued_unclaimed, timestamp, Attempt, Claimed, DeliveryFilter, Endpoint, EndpointPatch,
    NewDelivery, NewEndpoint, PayloadFormat, Redelivery, Subscriber, Target, WebhookError, WebhookStore,
    ATTEMPT_BODY_LIMIT,
};
