//! Liveness and service status, as in seed 003.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use keyledger_app::client::error_chain;
use keyledger_eventlog::Backend;
use serde_json::{json, Value};

use keyledger_http::Routes;

use super::OpsState;
use keyledger_http::instant;
use utoipa_axum::routes;

pub fn routes() -> Routes<OpsState> {
    Routes::new().add(routes!(status)).add(routes!(health))
}

#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    summary = "Service status",
    responses((status = 200, description = "Running", body = crate::openapi::ServiceStatus), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error))
)]
async fn status() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": "keyledger",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": instant(Utc::now()),
    }))
}

/// Healthy if the store answers a query, every background consumer is up
/// and no further behind than `KEYLEDGER_HEALTH_MAX_LAG_SECS`, and the
/// validation view has finished loading since the start.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    summary = "Health: whether the store answers and the background consumers keep up",
    responses((status = 200, description = "Healthy", body = crate::openapi::Health), (status = 503, description = "The store does not answer, a consumer is down or behind, or the validation view is still loading after a start", body = crate::openapi::Health), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error))
)]
async fn health(State(state): State<OpsState>) -> (StatusCode, Json<Value>) {
    let store = match state.db.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let consumers = match state.db.ping().await {
        Ok(()) => state.consumers.report().await,
        Err(error) => Err(error),
    };
    let view = &state.consumers.validation_view;
    let loading = view.is_loading();
    let (status, word, consumers) = match consumers {
        // Serving, but a listing would wait: not ready for a balancer.
        Ok(consumers) if loading => (StatusCode::SERVICE_UNAVAILABLE, "loading", json!(consumers)),
        Ok(consumers) if consumers.iter().all(|c| c.healthy) => (StatusCode::OK, "healthy", json!(consumers)),
        Ok(consumers) => {
            let down: Vec<&str> = consumers.iter().filter(|c| !c.healthy).map(|c| c.status.name.as_str()).collect();
            tracing::warn!(?down, "health check: background consumers down or behind");
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", json!(consumers))
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "health check: store unreachable");
            let statuses = state.consumers.statuses.all();
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", json!(statuses))
        }
    };
    let body = json!({
        "status": word,
        "store": store,
        "consumers": consumers,
        "validationView": {"loading": loading, "licenses": view.len()},
        "timestamp": instant(Utc::now()),
    });
    (status, Json(body))
}
