//! The `Dialect` abstraction: an API style served over the one client
//! service and the one set of commands. Each dialect declares its paths,
//! routes, rate-limit rules and error rendering; the router registers the
//! list ([`Dialects`]), and the middleware asks the list, never a dialect
//! by name.
//!
//! A dialect parses its requests, calls `keyledger_app::client` (the
//! client rules every dialect shares) or a store, and renders the answer
//! in its own shape. It has no business rule of its own. Errors raised
//! before a handler runs (the request screen, rate limits, unknown
//! routes) are rendered again in the dialect's error shape by the front
//! door, so a client of a dialect never meets another dialect's errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyledger_app::signing::Directory;
use serde_json::Value;

use crate::error::{ApiError, ErrorParts};
use crate::routes::Routes;

/// An API style: its paths, routes, rules and error shape.
pub trait Dialect: Send + Sync + 'static {
    /// Its name, as recorded in event metadata (`api`). Kept stable: it is
    /// stored in every event the dialect causes.
    fn name(&self) -> &'static str;

    /// Whether a request path is this dialect's.
    fn owns(&self, path: &str) -> bool;

    /// Its routes, with their OpenAPI operations.
    fn routes(&self) -> Routes;

    /// Routes with a rate limit and progressive blocks of their own.
    fn route_rules(&self) -> Vec<RouteRule> {
        Vec::new()
    }

    /// Whether a route template of this dialect is one of the client calls,
    /// limited per address like the native client endpoints.
    fn is_client_route(&self, _route: &str) -> bool {
        false
    }

    /// An error answered on this dialect's path before a handler ran (by
    /// the screen, the rate limits, an extractor or a fallback), in the
    /// dialect's shape. None keeps the native JSON error.
    fn render_error(
        &self,
        _directory: &Directory,
        _path: &str,
        _status: StatusCode,
        _error: &ErrorParts,
    ) -> Option<Response> {
        None
    }

    /// Whether [`Dialect::seal`] is to be called for this dialect's answers.
    fn seals(&self) -> bool {
        false
    }

    /// A last look at every answer on this dialect's paths, errors and
    /// empty answers included, with the request as it was received: a
    /// dialect that signs its answers does it here. Called only when
    /// [`Dialect::seals`] says so.
    fn seal<'a>(&'a self, _directory: &'a Directory, _head: &'a RequestHead, response: Response) -> Sealing<'a> {
        Box::pin(async move { response })
    }
}

/// An answer being sealed.
pub type Sealing<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// The request line and `Host` as the client sent them, for signatures
/// that cover them.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: axum::http::Method,
    /// The path and query exactly as received (still percent-encoded).
    pub target: String,
    pub host: Option<String>,
}

/// The dialects a server speaks, the first that owns a path answering for
/// it; the last is the fallback for every other path (the native API).
#[derive(Clone)]
pub struct Dialects(Arc<[Box<dyn Dialect>]>);

impl Dialects {
    /// `list` must end with the fallback dialect.
    pub fn new(list: Vec<Box<dyn Dialect>>) -> Self {
        assert!(!list.is_empty(), "a server speaks at least one dialect");
        Self(list.into())
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Dialect> {
        self.0.iter().map(|dialect| dialect.as_ref())
    }

    /// The dialect a request path belongs to.
    pub fn of_path(&self, path: &str) -> &dyn Dialect {
        let last = self.0.len() - 1;
        self.0[..last].iter().find(|dialect| dialect.owns(path)).unwrap_or(&self.0[last]).as_ref()
    }

    /// Whether a route template is a client call of the dialect it belongs to.
    pub fn is_client_route(&self, route: &str) -> bool {
        self.of_path(route).is_client_route(route)
    }

    /// Every dialect's route rules.
    pub fn route_rules(&self) -> Vec<RouteRule> {
        self.iter().flat_map(|dialect| dialect.route_rules()).collect()
    }

    /// Every dialect's routes.
    pub fn routes(&self) -> Routes {
        self.iter().fold(Routes::new(), |routes, dialect| routes.merge(dialect.routes()))
    }
}

/// A route's own rate limit, with progressive blocks (a dialect's
/// per-endpoint table).
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    /// The route template, as the router matched it.
    pub route: &'static str,
    pub per_minute: u32,
    pub block_base: Duration,
    pub block_max: Duration,
}

/// Marks an answer that is what a key guesser gets: an unknown or
/// malformed license key on a client endpoint. The rate limits count it
/// towards the caller's progressive block.
#[derive(Debug, Clone, Copy)]
pub struct FailedGuess;

/// A dialect handler's error as a response, marked as a failed guess when
/// it is an unknown or malformed license key.
pub fn refusal(error: ApiError) -> Response {
    let guessed = is_failed_guess(&error);
    let mut response = error.into_response();
    if guessed {
        response.extensions_mut().insert(FailedGuess);
    }
    response
}

/// An unknown or malformed license key: what someone guessing keys is
/// answered, counted towards the caller's progressive block.
pub fn is_failed_guess(error: &ApiError) -> bool {
    error.code == "license_not_found" || error.field.as_deref() == Some("licenseKey")
}

/// The status the source documents give a refusal by the license rules
/// or the limits: 404 an unknown key, 403 a license (or device) that may
/// not be used, 409 seats full, 429 a rate or transfer limit.
pub fn refusal_status(code: &str) -> Option<StatusCode> {
    Some(match code {
        "license_not_found" | "route_not_found" => StatusCode::NOT_FOUND,
        "license_suspended"
        | "license_expired"
        | "license_revoked"
        | "device_blocked"
        | "heartbeat_dead"
        | "machine_not_activated"
        | "license_not_activated"
        | "product_mismatch"
        | "feature_missing" => StatusCode::FORBIDDEN,
        "seat_limit_reached" | "bound_to_another_machine" => StatusCode::CONFLICT,
        "transfer_limit" | "rate_limited" | "blocked" => StatusCode::TOO_MANY_REQUESTS,
        _ => return None,
    })
}

/// A dialect handler's answer: 200 with the body, or the error.
pub fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => refusal(error),
    }
}

/// The wire name of a native field in a snake_case dialect.
pub fn snake_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The client service's view of a request: where it came from and who
/// presented a key.
pub fn client_call<'a>(
    context: &'a crate::extract::RequestContext,
    caller: Option<&'a keyledger_app::access::Caller>,
) -> keyledger_app::client::Call<'a> {
    keyledger_app::client::Call { origin: context.origin(), caller }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_fields_become_snake_case() {
        assert_eq!(snake_field("licenseKey"), "license_key");
        assert_eq!(snake_field("nonce"), "nonce");
    }
}
