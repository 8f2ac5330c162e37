//! Webhook delivery, in two consumers:
//!
//! - the **dispatcher** (one per database) reads the feed, the log's
//!   tail or (with NATS) a durable JetStream consumer, sends the
//!   deliveries each batch of events calls for (one for every enabled
//!   endpoint whose subscription matches an event), and records what
//!   became of them in one transaction before it acknowledges the feed.
//!   The event in the log is the record that it must be delivered, so a
//!   delivery that succeeds at once costs no row of its own (see
//!   `keyledger_app::webhooks::Dispatched`), and a crash replays the batch
//!   with the same `webhook-id`s;
//! - the **sender** (every process) claims the deliveries that have rows
//!   (failed and due for a retry, redelivered, not tried in their batch's
//!   time, or left claimed by a process that died), sends them, and
//!   records each attempt and what follows from it (done, the next
//!   attempt per the retry schedule, given up, the endpoint disabled).
//!
//! Both share this process's [`Lanes`]: an endpoint has at most
//! [`ENDPOINT_IN_FLIGHT`] attempts under way from it, so a slow or dead
//! endpoint holds up only itself.

mod attempt;
mod dispatcher;
mod sender;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyledger_app::webhooks::{Attempt, Outcome, RetryPolicy, SafeResolver};

pub use dispatcher::{start_dispatching_at_end_if_new, Dispatcher};
pub use sender::Sender;

pub const WEBHOOK_DISPATCHER: &str = "webhook-dispatcher";
pub const WEBHOOK_SENDER: &str = "webhook-sender";
/// Most attempts the dispatcher, and the sender, each have under way at
/// once.
const IN_FLIGHT: usize = 256;
/// Most attempts a process has under way to one endpoint at once.
pub const ENDPOINT_IN_FLIGHT: usize = 16;
/// How long a claim lasts beyond the attempt's own timeout; a process
/// that dies mid-attempt holds its deliveries this long.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

/// Attempts under way in this process, by endpoint, shared by its
/// dispatcher and its sender.
#[derive(Clone, Default)]
pub struct Lanes(Arc<Mutex<HashMap<String, usize>>>);

impl Lanes {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one of the endpoint's lanes for an attempt; false when all
    /// [`ENDPOINT_IN_FLIGHT`] are taken.
    fn take(&self, endpoint: &str) -> bool {
        let mut held = self.held();
        let taken = held.entry(endpoint.to_owned()).or_default();
        if *taken >= ENDPOINT_IN_FLIGHT {
            return false;
        }
        *taken += 1;
        true
    }

    /// Gives back a lane whose attempt ended.
    fn give_back(&self, endpoint: &str) {
        let mut held = self.held();
        if let Some(taken) = held.get_mut(endpoint) {
            *taken = taken.saturating_sub(1);
            if *taken == 0 {
                held.remove(endpoint);
            }
        }
    }

    fn has_room(&self, endpoint: &str) -> bool {
        self.held().get(endpoint).copied().unwrap_or(0) < ENDPOINT_IN_FLIGHT
    }

    /// The endpoints with every lane taken.
    fn full(&self) -> Vec<String> {
        self.held().iter().filter(|(_, taken)| **taken >= ENDPOINT_IN_FLIGHT).map(|(e, _)| e.clone()).collect()
    }
}

/// The client every attempt goes through: no redirects, no proxy, the
/// attempt's timeout, and a resolver that refuses internal addresses.
fn http_client(policy: &RetryPolicy, allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout)
        .no_proxy()
        .dns_resolver(Arc::new(SafeResolver { allow_private }))
        .user_agent(concat!("keyledger-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Counts an ended attempt in the metrics, and logs why it failed.
fn observe(metrics: &keyledger_app::Metrics, delivery: &str, endpoint: &str, attempt: &Attempt) {
    let outcome = match attempt.outcome {
        Outcome::Delivered => "delivered",
        Outcome::Gone => "gone",
        Outcome::Failed { .. } => "failed",
    };
    metrics.webhook_attempt(outcome, attempt.latency.as_secs_f64());
    if let Some(error) = &attempt.error {
        tracing::info!(%delivery, %endpoint, %error, "webhook attempt failed");
    }
}

/// An attempt task's id and what it came to: a task that did not finish
/// (it panicked) is a failed attempt, retried on the schedule.
type Joined = Result<(tokio::task::Id, Attempt), tokio::task::JoinError>;

fn joined(ended: Joined) -> (tokio::task::Id, Attempt) {
    match ended {
        Ok(ended) => ended,
        Err(error) => {
            let failed = Attempt {
                at: chrono::Utc::now(),
                status_code: None,
                latency: Duration::ZERO,
                error: Some(format!("the attempt did not finish: {error}")),
                response_body: String::new(),
                outcome: Outcome::Failed { retry_after: None },
            };
            (error.id(), failed)
        }
    }
}
