//! One attempt at a delivery: a signed POST, and what came of it.

use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use keyledger_app::webhooks::{check_url, signature, Attempt, Claimed, Outcome, ATTEMPT_BODY_LIMIT};

/// What an attempt sends, and where. Not `Debug`: it holds signing keys.
pub(super) struct Request {
    pub url: String,
    /// The current secret's key, then the previous one's during a rotation.
    pub keys: Vec<Vec<u8>>,
    pub webhook_id: String,
    pub payload: String,
}

impl Request {
    pub fn of(claimed: &Claimed) -> Self {
        Request {
            url: claimed.url.clone(),
            keys: claimed.keys.clone(),
            webhook_id: claimed.event_id.clone(),
            payload: claimed.payload.clone(),
        }
    }
}

/// One attempt: never fails, whatever the endpoint does; what happened is
/// in the returned record.
pub(super) async fn attempt(client: reqwest::Client, allow_private: bool, delivery: Request) -> Attempt {
    let at = Utc::now();
    let started = Instant::now();
    let failed = |error: String, status_code: Option<u16>, body: String| Attempt {
        at,
        status_code,
        latency: started.elapsed(),
        error: Some(error),
        response_body: body,
        outcome: Outcome::Failed { retry_after: None },
    };
    // Checked again at each attempt: an address in the URL itself never
    // goes through the resolver that refuses internal ones.
    if let Err(refused) = check_url(&delivery.url, allow_private) {
        return failed(refused.to_string(), None, String::new());
    }
    let timestamp = at.timestamp();
    let signatures = signature::header(&delivery.keys, &delivery.webhook_id, timestamp, &delivery.payload);
    let sent = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures)
        .body(delivery.payload)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return failed(describe(error), None, String::new()),
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = read_capped(response).await;
    let outcome = Outcome::of_status(status, retry_after.as_deref());
    let error = match outcome {
        Outcome::Delivered => None,
        Outcome::Gone => Some("the endpoint answered 410 Gone; it is disabled".to_owned()),
        Outcome::Failed { .. } => Some(format!("the endpoint answered {status}")),
    };
    Attempt { at, status_code: Some(status), latency: started.elapsed(), error, response_body: body, outcome }
}

/// A reqwest error as a line for the delivery log, without the URL.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The first [`ATTEMPT_BODY_LIMIT`] bytes of an answer; the rest is not
/// read.
async fn read_capped(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(ATTEMPT_BODY_LIMIT - body.len())]);
        if body.len() >= ATTEMPT_BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
