//! The V2 License Server's resources: a license's resources, allocation
//! (all or nothing, one winner), availability and statistics, over the
//! tenant's pool.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use keyledger_domain::{ResourceCommand, ResourceStatus};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::admin::{integer_id, license_numbered};
use super::wire::AllocateRequest;
use super::SystemCaller;
use crate::native::resources::{change_pool, pool_of};
use keyledger_http::dialect::answer;
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;

/// Most resources one allocation names.
const MAX_ALLOCATE: usize = 1000;

pub fn routes() -> keyledger_http::Routes {
    keyledger_http::Routes::new()
        .add(routes!(license_resources))
        .add(routes!(allocate))
        .add(routes!(check_availability))
        .add(routes!(stats))
}

#[utoipa::path(
    get,
    path = "/api/license/{license_id}/resources",
    tag = "v2-server",
    operation_id = "v2_server_license_resources",
    summary = "The resources allocated to a license",
    params(("license_id" = i64, Path, description = "The license's integer id")),
    responses((status = 200, description = "{resources}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn license_resources(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_id): PathParam,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let license = license_numbered(&state, &caller, integer_id(&raw_id, "license_id")?).await?;
            let pool = pool_of(&state, &license.tenant_id).await?;
            let resources: Vec<Value> = pool
                .held_by(&license.id)
                .map(|resource| {
                    json!({
                        "id": resource.id,
                        "type": resource.r#type,
                        "identifier": resource.identifier,
                        "status": resource.status.as_str(),
                        "allocated_at": resource.allocated_at.map(instant),
                    })
                })
                .collect();
            Ok(json!({ "resources": resources }))
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/api/resources/allocate",
    tag = "v2-server",
    operation_id = "v2_server_allocate",
    summary = "Allocate resources to a license: all of them or none",
    request_body = AllocateRequest,
    responses((status = 200, description = "{success, allocated, message}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn allocate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    body: Result<JsonBody<AllocateRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let number = request.license_id.ok_or_else(|| ApiError::field("licenseId", "license_id is required"))?;
            let ids = request.resource_ids.ok_or_else(|| ApiError::field("resourceIds", "resource_ids is required"))?;
            if ids.is_empty() || ids.len() > MAX_ALLOCATE {
                return Err(ApiError::field("resourceIds", format!("resource_ids must name 1 to {MAX_ALLOCATE}")));
            }
            let license = license_numbered(&state, &caller, number).await?;
            let tenant_id = license.tenant_id.to_string();
            let at = Utc::now();
            let license_id = license.id.to_string();
            let command = || ResourceCommand::Allocate { license_id: license_id.clone(), ids: ids.clone(), at };
            let before = pool_of(&state, &tenant_id).await?;
            let held_before = before.held_by(&license_id).count();
            let pool = change_pool(&state, &context, &caller, &tenant_id, command).await?;
            let allocated = pool.held_by(&license_id).count().saturating_sub(held_before);
            Ok(json!({
                "success": true,
                "allocated": allocated,
                "message": format!("{allocated} resources allocated successfully"),
            }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/resources/check-availability",
    tag = "v2-server",
    operation_id = "v2_server_check_availability",
    summary = "Whether `count` resources of `type` are free",
    params(("type" = Option<String>, Query, description = "A resource type; all types when left out"), ("count" = Option<i64>, Query, description = "How many are wanted (1)")),
    responses((status = 200, description = "{available, count, resources}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn check_availability(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    query: super::RawQuery,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let query = super::query_of(query, &["type", "count"])?;
            let wanted = match query.get("count") {
                None => 1,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|count| (1..=MAX_ALLOCATE).contains(count))
                    .ok_or_else(|| ApiError::field("count", "count must be an integer from 1 to 1000"))?,
            };
            let (tenant_id, _) = caller.tenant()?;
            let pool = pool_of(&state, tenant_id).await?;
            let free: Vec<_> = pool
                .resources
                .iter()
                .filter(|resource| resource.status == ResourceStatus::Available)
                .filter(|resource| query.get("type").is_none_or(|kind| &resource.r#type == kind))
                .collect();
            let listed: Vec<Value> = free
                .iter()
                .take(wanted)
                .map(
                    |resource| json!({ "id": resource.id, "type": resource.r#type, "identifier": resource.identifier }),
                )
                .collect();
            Ok(json!({ "available": free.len() >= wanted, "count": free.len(), "resources": listed }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/resources/stats",
    tag = "v2-server",
    operation_id = "v2_server_resource_stats",
    summary = "The pool's resources by status and type (retired ones not counted)",
    responses((status = 200, description = "{total, allocated, available, by_type}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn stats(State(state): State<AppState>, caller: Result<SystemCaller, ApiError>) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let (tenant_id, _) = caller.tenant()?;
            let pool = pool_of(&state, tenant_id).await?;
            let mut by_type: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for resource in pool.resources.iter().filter(|resource| resource.status != ResourceStatus::Retired) {
                let counts = by_type.entry(resource.r#type.as_str()).or_default();
                counts.0 += 1;
                counts.1 += u64::from(resource.status == ResourceStatus::Allocated);
            }
            let (total, allocated) = by_type.values().fold((0, 0), |(t, a), (total, held)| (t + total, a + held));
            let by_type: serde_json::Map<String, Value> = by_type
                .into_iter()
                .map(|(kind, (total, held))| {
                    (kind.to_owned(), json!({ "total": total, "allocated": held, "available": total - held }))
                })
                .collect();
            Ok(json!({ "total": total, "allocated": allocated, "available": total - allocated, "by_type": by_type }))
        }
        .await,
    )
}
