//! Request extractors: JSON bodies whose errors name the field at fault,
//! and the per-request context that goes into every event's metadata.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. An empty body reads as `{}`, so endpoints whose fields all
/// have defaults can be called with no body at all.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            ApiError::bad_request("unreadable_body", rejection.body_text()).with_status(rejection.status())
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        parse_json(bytes).map(JsonBody)
    }
}

/// The one parameter of a path such as `/revoke/{licenseId}`, whose
/// rejection (bad percent-encoding, say) is a JSON error like any other.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

/// Deserialises `bytes`, reporting the path of the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("malformed_json", format!("Request body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request("invalid_body", format!("Request body must be a JSON object: {inner}"))
        } else {
            ApiError::field(&path, format!("{path}: {}", strip_position(&inner.to_string())))
        }
    })
}

/// serde_json appends " at line 1 column 17"; the field name says more.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(head, _)| head)
}

/// Who sent this request and as which request: recorded with every event.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

const REQUEST_ID: &str = "x-request-id";

/// Middleware: adopts a caller's `X-Request-Id` when it is sane, otherwise
/// makes one, and echoes it on the response so logs and clients can be
/// matched up. Logs each request at debug level by its route template, so
/// license keys in paths never reach the log.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("(no route)", MatchedPath::as_str).to_owned();
    let headers = req.headers();
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    let client_ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string());
    let context = RequestContext { request_id: request_id.clone(), client_ip, user_agent };
    req.extensions_mut().insert(context);
    let mut response = next.run(req).await;
    tracing::debug!(
        %method,
        route,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        request_id,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or((StatusCode::INTERNAL_SERVER_ERROR, "request context middleware is not installed"))
    }
}
