//! The API dialects: the wire formats of the seed documents, each served at
//! its own paths over the same commands and reads.
//!
//! A dialect parses its requests, calls [`flow`] (the client rules every
//! dialect shares: finding a license the caller may use, activating,
//! checking, deactivating, tokens) and renders the answer in its own
//! shape. It has no business rule of its own. Errors raised before a
//! handler runs (the request screen, rate limits, unknown routes) are
//! rendered again in the dialect's error shape by [`render_errors`], so a
//! client of a dialect never meets another dialect's errors.
//!
//! - `native`: seed 000's format and keyledger's management API;
//! - `seed001`: `/license/...`, RSA-signed answers, five-by-five keys;
//! - `seed002`: `/api/licenses/...`, validate-and-activate, generic
//!   errors, per-endpoint limits with progressive blocks;
//! - `seed004`: `/v1/...`, tenant API keys and Ed25519 license tokens.


pub mod native;
mod seed001;
mod seed002;
mod seed004;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, ErrorParts};
use crate::limits::FailedGuess;
use crate::router::Routes;
use keyledger_app::signing::Directory;
use std::future::Future;

/// The routes whose dialect gives each its own rate limit and blocks.
pub fn route_rules() -> Vec<crate::limits::routes::RouteRule> {
    seed002::route_rules()
}

/// Every dialect's routes.
pub fn routes() -> Routes {
    native::routes().merge(seed001::routes()).merge(seed002::routes()).merge(seed004::routes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Native,
    Seed001,
    Seed002,
    Seed004,
}

impl Dialect {
    /// The dialect a request path belongs to.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/license/") {
            Dialect::Seed001
        } else if path.starts_with("/api/licenses/") {
            Dialect::Seed002
        } else if path.starts_with("/v1/") {
            Dialect::Seed004
        } else {
            Dialect::Native
        }
    }

    /// Its name, as recorded in event metadata (`api`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Native => "native",
            Dialect::Seed001 => "seed001",
            Dialect::Seed002 => "seed002",
            Dialect::Seed004 => "seed004",
        }
    }

    /// Whether a route of this dialect is one of the client calls, limited
    /// per address like the native client endpoints.
    pub fn is_client_route(route: &str) -> bool {
        match Dialect::of_path(route) {
            Dialect::Native => false,
            Dialect::Seed001 => route != "/license/public-key",
            Dialect::Seed002 => true,
            Dialect::Seed004 => route != "/v1/public-key",
        }
    }

    /// An error in this dialect's shape and status.
    fn render(self, path: &str, status: StatusCode, error: &ErrorParts) -> Option<(StatusCode, Value)> {
        match self {
            Dialect::Native => None,
            Dialect::Seed001 => Some(seed001::error_body(status, error)),
            Dialect::Seed002 => Some(seed002::error_body(path, status, error)),
            Dialect::Seed004 => Some(seed004::error_body(status, error)),
        }
    }
}

/// The client service's view of a request: where it came from and who
/// presented a key.
pub(crate) fn client_call<'a>(
    context: &'a crate::extract::RequestContext,
    caller: Option<&'a crate::auth::Caller>,
) -> keyledger_app::client::Call<'a> {
    keyledger_app::client::Call { origin: context.origin(), caller }
}

/// A dialect handler's error as a response: rendered in the dialect's
/// shape by [`render_errors`], and marked as a failed guess (for the
/// progressive blocks) when it is an unknown or malformed license key.
pub(crate) fn refusal(error: ApiError) -> Response {
    let guessed = is_failed_guess(&error);
    let mut response = error.into_response();
    if guessed {
        response.extensions_mut().insert(FailedGuess);
    }
    response
}

/// An unknown or malformed license key: what someone guessing keys is
/// answered, counted towards the caller's progressive block.
pub(crate) fn is_failed_guess(error: &ApiError) -> bool {
    error.code == "license_not_found" || error.field.as_deref() == Some("licenseKey")
}

/// The status the seed documents give a refusal by the license rules or
/// the limits: 404 an unknown key, 403 a license (or device) that may not
/// be used, 409 seats full, 429 a rate or transfer limit.
pub(crate) fn refusal_status(code: &str) -> Option<StatusCode> {
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
pub(crate) fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => refusal(error),
    }
}

/// The wire name of a native field in a snake_case dialect.
pub(crate) fn snake_field(field: &str) -> String {
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

/// Middleware: an error answered on a dialect's path in the native shape
/// (by the screen, the rate limits, an extractor or a fallback) is
/// rendered again in the dialect's shape, keeping its headers
/// (`Retry-After`, the rate-limit headers). On the native client
/// endpoints such an error is answered as their own refusals are, signed.
pub async fn render_errors<F: Future<Output = Response>>(
    directory: &Directory,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let dialect = Dialect::of_path(request.uri().path());
    if dialect == Dialect::Native {
        let Some(shape) = native::client::refusal_shape(request.uri().path()) else {
            return next(request).await;
        };
        let response = next(request).await;
        let Some(error) = response.extensions().get::<ErrorParts>() else { return response };
        let answer = native::client::early_refusal(directory, shape, response.status(), error);
        return with_headers_of(answer, response);
    }
    let path = request.uri().path().to_owned();
    let response = next(request).await;
    let Some(error) = response.extensions().get::<ErrorParts>().cloned() else { return response };
    let Some((status, body)) = dialect.render(&path, response.status(), &error) else { return response };
    let (mut parts, _) = response.into_parts();
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(serde_json::to_vec(&body).expect("a JSON value serialises")))
}

/// `answer`, with the headers of `original` it doesn't set itself
/// (`Retry-After`, the rate-limit headers, `Allow`).
fn with_headers_of(mut answer: Response, original: Response) -> Response {
    let (parts, _) = original.into_parts();
    let own: Vec<_> = answer.headers().keys().cloned().collect();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && !own.contains(name) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_dialect() {
        assert_eq!(Dialect::of_path("/license/activate"), Dialect::Seed001);
        assert_eq!(Dialect::of_path("/v1/verify"), Dialect::Seed004);
        assert_eq!(Dialect::of_path("/api/v1/licenses/activate"), Dialect::Native);
        assert_eq!(Dialect::of_path("/licenses"), Dialect::Native);
        assert!(Dialect::is_client_route("/v1/heartbeat"));
        assert!(!Dialect::is_client_route("/v1/public-key"));
    }

    #[test]
    fn native_fields_become_snake_case() {
        assert_eq!(snake_field("licenseKey"), "license_key");
        assert_eq!(snake_field("nonce"), "nonce");
    }
}
