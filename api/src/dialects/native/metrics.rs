//! `GET /metrics`: this process's metrics in the Prometheus text format,
//! open, or behind `KEYLEDGER_METRICS_TOKEN` when it is set.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_eventlog::on_pool;

use crate::error::ApiError;
use crate::metrics::{ConsumerLabels, PoolLabels};
use crate::router::Routes;
use crate::state::AppState;
use keyledger_app::secret::{digests_match, sha256_hex};
use utoipa_axum::routes;

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

    match state.webhooks.pending().await {
        Ok(pending) => {
            metrics.webhook_pending.set(pending);
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot count pending webhook deliveries"),
    }
    for report in crate::consumers::report(state).await? {
        let labels = ConsumerLabels { consumer: report.status.name.clone() };
        metrics.consumer_lag_events.get_or_create(&labels).set(report.lag_events.unwrap_or(0));
        metrics.consumer_lag_seconds.get_or_create(&labels).set(report.lag_seconds.unwrap_or(0.0));
        metrics.consumer_up.get_or_create(&labels).set(i64::from(report.healthy));
        // The runtime keeps the counts; the counters show them as they are.
        let counts = [
            (&metrics.consumer_restarts, report.status.restarts),
            (&metrics.consumer_failures, report.status.failures),
        ];
        for (family, count) in counts {
            family.get_or_create(&labels).inner().store(count, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}
