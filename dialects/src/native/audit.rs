//! A license's history, and its state at any past instant, for its owner,
//! its tenant's admins and the operator.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::licenses::license_on_record;
use crate::native::wire::{instant, LicenseResponse};
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::PathParam;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

pub(super) const DEFAULT_PAGE: i64 = 100;
pub(super) const MAX_PAGE: i64 = 1_000;

/// Per-license audit routes, served under both license prefixes.
pub fn routes() -> Routes {
    Routes::new().add(routes!(history)).add(routes!(state_at))
}

/// Platform-wide audit routes: signed checkpoints of the whole log.
pub fn platform_routes() -> Routes {
    Routes::new().add(routes!(public_key)).add(routes!(list_checkpoints)).add(routes!(create_checkpoint))
}

/// The key checkpoints are signed with. Public by nature; auditors pin it.
#[utoipa::path(
    get,
    path = "/api/v1/audit/public-key",
    tag = "audit",
    summary = "The key audit checkpoints are signed with",
    responses((status = 200, description = "The Ed25519 public key, hex", body = crate::native::schemas::AuditPublicKey), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error))
)]
async fn public_key(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "algorithm": "Ed25519", "publicKey": state.checkpoints.public_key_hex() }))
}

/// The newest checkpoints (`limit`, default 100), newest first. They
/// describe the whole platform's log, so they are the operator's.
#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoints",
    tag = "audit",
    summary = "The newest signed checkpoints (operator)",
    params(("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "Checkpoints, newest first", body = Vec<serde_json::Value>), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_checkpoints(
    State(state): State<AppState>,
    caller: Caller,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let params = query_params(params)?;
    let limit = integer_param(&params, "limit", DEFAULT_PAGE, (1, MAX_PAGE))?;
    let checkpoints = state.checkpoints.list(limit).await.map_err(ApiError::internal)?;
    Ok(Json(json!(checkpoints)))
}

/// Signs a checkpoint of the log as it is now, for an auditor to keep.
#[utoipa::path(
    post,
    path = "/api/v1/audit/checkpoints",
    tag = "audit",
    summary = "Sign a checkpoint of the log as it is now (operator)",
    responses((status = 201, description = "The signed checkpoint", body = serde_json::Value), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<(axum::http::StatusCode, Json<Value>)> {
    caller.require_operator()?;
    match state.checkpoints.create(Utc::now()).await.map_err(ApiError::internal)? {
        Some(checkpoint) => Ok((axum::http::StatusCode::CREATED, Json(json!(checkpoint)))),
        None => Err(ApiError::bad_request("log_empty", "The log has no events to checkpoint yet")
            .with_status(axum::http::StatusCode::CONFLICT)),
    }
}

pub(super) type QueryParams = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

pub(super) fn query_params(params: QueryParams) -> ApiResult<HashMap<String, String>> {
    params.map(|Query(params)| params).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

pub(super) fn integer_param(
    params: &HashMap<String, String>,
    name: &str,
    default: i64,
    range: (i64, i64),
) -> ApiResult<i64> {
    keyledger_http::extract::bounded_integer(params.get(name).map(String::as_str), name, default, range)
}

/// `GET …/{licenseId}/events?after=<position>&limit=<n>`: the license's
/// events in order, each with its metadata and chain hash. Page on by
/// passing the last event's `position` as `after` (`nextAfter`).
#[utoipa::path(
    get,
    path = "/{license_id}/events",
    tag = "audit",
    summary = "A license's history, oldest first",
    params(("license_id" = String, Path, description = "The license id (a UUID)"), ("after" = Option<i64>, Query, description = "Position to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of event envelopes", body = crate::native::schemas::History), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn history(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let params = query_params(params)?;
    let after = integer_param(&params, "after", 0, (0, i64::MAX))?;
    let limit = integer_param(&params, "limit", DEFAULT_PAGE, (1, MAX_PAGE))?;
    let license = license_on_record(&state, &caller, &raw_id).await?;
    let events = state.log.history(&license.id, after, limit).await.map_err(ApiError::internal)?;
    let next_after = (events.len() as i64 == limit).then(|| events.last().map(|e| e.position)).flatten();
    Ok(Json(json!({
        "licenseId": license.id,
        "events": events.iter().map(|e| e.envelope()).collect::<Vec<_>>(),
        "nextAfter": next_after,
    })))
}

/// `GET …/{licenseId}/state?at=<RFC 3339>`: the license as it was at that
/// instant, folded from its events up to then.
#[utoipa::path(
    get,
    path = "/{license_id}/state",
    tag = "audit",
    summary = "A license as it was at an instant, replayed from its events",
    params(("license_id" = String, Path, description = "The license id (a UUID)"), ("at" = String, Query, description = "An RFC 3339 instant")),
    responses((status = 200, description = "The license then", body = crate::native::schemas::StateAt), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn state_at(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let params = query_params(params)?;
    let raw_at = params
        .get("at")
        .ok_or_else(|| ApiError::field("at", format!("at is required: it {}", keyledger_http::dates::EXPECTED)))?;
    let at: DateTime<Utc> = keyledger_http::dates::parse_instant(raw_at)
        .ok_or_else(|| ApiError::field("at", format!("at {}", keyledger_http::dates::EXPECTED)))?;
    let current = license_on_record(&state, &caller, &raw_id).await?;
    let Some((license, version)) =
        keyledger_app::history::state_at(&state.log, &current.id, at).await.map_err(ApiError::internal)?
    else {
        return Err(ApiError::not_found(format!("The license did not exist yet at {}", instant(at)))
            .with_code("license_not_yet_generated"));
    };
    Ok(Json(json!({ "at": raw_at, "version": version, "license": LicenseResponse::new(&license, at) })))
}
