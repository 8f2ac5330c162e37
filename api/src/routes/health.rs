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

pub fn routes() -> Routes {
    Routes::new().get("/", status).get("/health", health)
}

async fn status() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": "keyledger",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": instant(Utc::now()),
    }))
}

/// Healthy only if the store answers a query.
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
