//! `GET /metrics`: this process's metrics in the Prometheus text format,
//! open, or behind `KEYLEDGER_METRICS_TOKEN` when it is set.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyledger_eventlog::{on_pool, Cursor};
use keyledger_workers::{LICENSE_VIEW_RUNNER, RELAY_CONSUMER};

use super::Routes;
use crate::error::ApiError;
use crate::metrics::{ConsumerLabels, PoolLabels};
use crate::secret::{digests_match, sha256_hex};
use crate::state::AppState;
use utoipa_axum::routes;

/// Lag is counted up to this many events; past it the number is "a lot".
const LAG_COUNT_CAP: i64 = 100_000;

pub fn routes() -> Routes {
    Routes::new().add(routes!(metrics))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    summary = "Prometheus metrics (open, or behind KEYLEDGER_METRICS_TOKEN)",
    responses((status = 200, description = "Metrics in the text exposition format", content_type = "application/openmetrics-text", body = String), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []))
)]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if !presented.is_some_and(|token| digests_match(&sha256_hex(token), expected)) {
            return ApiError::unauthorized("GET /metrics needs `Authorization: Bearer <KEYLEDGER_METRICS_TOKEN>`")
                .into_response();
        }
    }
    let _turn = state.metrics.scrape.lock().await;
    if let Err(error) = read_gauges(&state).await {
        tracing::warn!(%error, "metrics: some gauges could not be read");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}

/// Sets the gauges that describe state from what the process sees now.
async fn read_gauges(state: &AppState) -> Result<(), keyledger_eventlog::EventLogError> {
    let metrics = &state.metrics;
    metrics.view_licenses.set(state.memory.len() as i64);
    metrics.active_blocks.set(state.limits.active_blocks() as i64);
    metrics.tracked_callers.set(state.limits.tracked() as i64);
    let (size, idle, max) =
        on_pool!(&state.db, pool => (pool.size(), pool.num_idle(), pool.options().get_max_connections()));
    metrics.pool_connections.get_or_create(&PoolLabels { state: "idle" }).set(idle as i64);
    metrics.pool_connections.get_or_create(&PoolLabels { state: "in_use" }).set(i64::from(size) - idle as i64);
    metrics.pool_connections.get_or_create(&PoolLabels { state: "max" }).set(i64::from(max));

    let follower = *state.follower_progress.lock().unwrap_or_else(|p| p.into_inner());
    let mut consumers: Vec<(&str, Cursor)> = vec![
        ("validation_view_follower", follower),
        (LICENSE_VIEW_RUNNER, state.log.checkpoint(LICENSE_VIEW_RUNNER).await?),
    ];
    if state.relay_enabled {
        consumers.push((RELAY_CONSUMER, state.log.checkpoint(RELAY_CONSUMER).await?));
    }
    let now = Utc::now();
    for (name, cursor) in consumers {
        let (events, oldest) = state.log.behind(cursor, LAG_COUNT_CAP).await?;
        let seconds = oldest
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map_or(0.0, |t| (now - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0);
        let labels = ConsumerLabels { consumer: name.to_owned() };
        metrics.consumer_lag_events.get_or_create(&labels).set(events);
        metrics.consumer_lag_seconds.get_or_create(&labels).set(seconds);
    }
    Ok(())
}
