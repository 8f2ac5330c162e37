//! The first layer of the front door: each request's id, context and
//! span, and its metrics.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use keyledger_http::dialect::Dialects;
use keyledger_http::extract::RequestContext;

const REQUEST_ID: &str = "x-request-id";

/// Middleware: adopts a caller's `X-Request-Id` when it is sane, otherwise
/// makes one, and echoes it on the response so logs and clients can be
/// matched up. Logs each request at debug level by its route template, so
/// license keys in paths never reach the log.
/// A layer of the front door (`router.rs`): `next` is what comes after it.
pub async fn request_context<F: std::future::Future<Output = Response>>(
    metrics: &crate::metrics::Metrics,
    dialects: &Dialects,
    mut req: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("(no route)", MatchedPath::as_str).to_owned();
    let headers = req.headers();
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        // From the thread's generator: `new_v4` asks the kernel for every
        // id, a system call on each request.
        .unwrap_or_else(|| uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string());
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    let client_ip = match req.extensions().get::<crate::limits::ClientIp>() {
        Some(crate::limits::ClientIp(ip)) => Some(ip.to_string()),
        None => req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string()),
    };
    let api = dialects.of_path(req.uri().path()).name();
    let context = RequestContext { request_id: request_id.clone(), client_ip, user_agent, api };
    req.extensions_mut().insert(context);
    // Every log line of the request, a 500's included, carries its id.
    let span = tracing::info_span!("request", id = %request_id, api, route = %route);
    let mut response = tracing::Instrument::instrument(next(req), span).await;
    metrics.request(
        &route,
        crate::metrics::method_label(&method),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
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
