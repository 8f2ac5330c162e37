//! Liveness and service status, as in seed 003.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use keyledger_eventlog::Backend;
use serde_json::{json, Value};

use super::Routes;
use crate::state::AppState;
use crate::wire::instant;
use utoipa_axum::routes;

pub fn routes() -> Routes {
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

/// Healthy only if the store answers a query.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    summary = "Health: whether the store answers",
    responses((status = 200, description = "Healthy", body = crate::openapi::Health), (status = 503, description = "The store does not answer", body = crate::openapi::Health), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error))
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = match state.db.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let (status, word) = match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "healthy"),
        Err(error) => {
            tracing::warn!(%error, "health check: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
        }
    };
    (status, Json(json!({ "status": word, "store": store, "timestamp": instant(Utc::now()) })))
}
