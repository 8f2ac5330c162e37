//! A tenant's pool of allocatable resources (tenant admins): created,
//! listed and retired here; allocated to licenses through the V2 License
//! Server dialect (`POST /api/resources/allocate`). The pool is one
//! aggregate a tenant, so of two allocations of one resource, on any
//! processes, the log takes exactly one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use keyledger_app::aggregates::CatalogError;
use keyledger_domain::{Resource, ResourceCommand, ResourceError, ResourcePool, ResourceStatus, TenantId};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::audit::{query_params, QueryParams};
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub fn routes() -> Routes {
    Routes::new().add(routes!(create_resource, list_resources)).add(routes!(retire_resource))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    /// Free text such as `server` or `workstation`, 1 to 100 characters.
    pub r#type: Option<String>,
    /// Unique in the tenant, 1 to 100 characters.
    pub identifier: Option<String>,
}

/// A pool's refusal or failure as an API error.
pub fn resource_error(error: CatalogError<ResourceError>) -> ApiError {
    match error {
        CatalogError::Refused(refusal) => {
            let message = refusal.to_string();
            match refusal {
                ResourceError::NotFound(_) => {
                    ApiError::not_found(message).with_code("resource_not_found").with_field("resourceIds")
                }
                ResourceError::HeldElsewhere { .. } => ApiError::bad_request("resource_held", message)
                    .with_status(StatusCode::CONFLICT)
                    .with_field("resourceIds"),
                ResourceError::Retired(_) => ApiError::bad_request("resource_retired", message)
                    .with_status(StatusCode::CONFLICT)
                    .with_field("resourceIds"),
                ResourceError::Allocated(_) => {
                    ApiError::bad_request("resource_allocated", message).with_status(StatusCode::CONFLICT)
                }
                ResourceError::IdentifierTaken => ApiError::bad_request("resource_identifier_taken", message)
                    .with_status(StatusCode::CONFLICT)
                    .with_field("identifier"),
                ResourceError::Invalid(why) => ApiError::field("identifier", why),
            }
        }
        CatalogError::Taken => {
            ApiError::bad_request("resource_identifier_taken", "identifier taken").with_status(StatusCode::CONFLICT)
        }
        CatalogError::Contended => ApiError::contended(),
        CatalogError::Store(error) => ApiError::internal(error),
    }
}

/// The tenant's pool (empty when it has none yet).
pub async fn pool_of(state: &AppState, tenant_id: &str) -> ApiResult<ResourcePool> {
    let stored = state.resources.get(tenant_id).await.map_err(resource_error)?;
    Ok(stored.map(|stored| stored.record).unwrap_or_default())
}

/// Runs `command` on the tenant's pool, with the caller as actor.
pub async fn change_pool(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    tenant_id: &str,
    command: impl Fn() -> ResourceCommand,
) -> ApiResult<ResourcePool> {
    let metadata = event_metadata(context, Some(caller), tenant_id, Utc::now());
    let stored = state.resources.execute(tenant_id, command, &metadata).await.map_err(resource_error)?;
    Ok(stored.record)
}

pub fn describe(resource: &Resource) -> Value {
    json!({
        "id": resource.id,
        "type": resource.r#type,
        "identifier": resource.identifier,
        "status": resource.status.as_str(),
        "licenseId": resource.license_id,
        "allocatedAt": resource.allocated_at.map(keyledger_http::instant),
        "createdAt": keyledger_http::instant(resource.created_at),
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/resources",
    tag = "resources",
    summary = "Add a resource to the tenant's pool (tenant admin)",
    request_body = ResourceRequest,
    responses((status = 201, description = "The resource, with its integer id", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_resource(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    JsonBody(request): JsonBody<ResourceRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = caller.require_admin()?.to_owned();
    let kind = request.r#type.ok_or_else(|| ApiError::field("type", "type is required"))?;
    let identifier = request.identifier.ok_or_else(|| ApiError::field("identifier", "identifier is required"))?;
    for (field, value) in [("type", &kind), ("identifier", &identifier)] {
        keyledger_domain::check_resource_text(value).map_err(|e| ApiError::field(field, format!("{field} {e}")))?;
    }
    let at = Utc::now();
    let command = || ResourceCommand::Create {
        tenant_id: TenantId::trusted(tenant_id.clone()),
        r#type: kind.clone(),
        identifier: identifier.clone(),
        at,
    };
    let pool = change_pool(&state, &context, &caller, &tenant_id, command).await?;
    let created = pool.resources.iter().find(|resource| resource.identifier == identifier);
    Ok((StatusCode::CREATED, Json(created.map(describe).unwrap_or_default())))
}

#[utoipa::path(
    get,
    path = "/api/v1/resources",
    tag = "resources",
    summary = "The tenant's resources, retired ones too (tenant admin)",
    params(("type" = Option<String>, Query, description = "Only this type"), ("status" = Option<String>, Query, description = "available, allocated or retired")),
    responses((status = 200, description = "{resources}", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_resources(State(state): State<AppState>, caller: Caller, params: QueryParams) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let params = query_params(params)?;
    if let Some(unknown) = params.keys().find(|name| !matches!(name.as_str(), "type" | "status")) {
        return Err(ApiError::field(unknown, format!("{unknown} is not a parameter here (type and status are)")));
    }
    let status = match params.get("status").map(String::as_str) {
        None => None,
        Some("available") => Some(ResourceStatus::Available),
        Some("allocated") => Some(ResourceStatus::Allocated),
        Some("retired") => Some(ResourceStatus::Retired),
        Some(_) => return Err(ApiError::field("status", "status must be available, allocated or retired")),
    };
    let pool = pool_of(&state, tenant_id).await?;
    let resources: Vec<Value> = pool
        .resources
        .iter()
        .filter(|resource| params.get("type").is_none_or(|kind| &resource.r#type == kind))
        .filter(|resource| status.is_none_or(|status| resource.status == status))
        .map(describe)
        .collect();
    Ok(Json(json!({ "resources": resources })))
}

#[utoipa::path(
    delete,
    path = "/api/v1/resources/{resource_id}",
    tag = "resources",
    summary = "Retire a resource that no license holds (tenant admin)",
    params(("resource_id" = i64, Path, description = "The resource's integer id")),
    responses((status = 204, description = "Retired"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn retire_resource(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<StatusCode> {
    let tenant_id = caller.require_admin()?.to_owned();
    let id = raw_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field("resourceId", "resourceId must be a positive integer"))?;
    let at = Utc::now();
    change_pool(&state, &context, &caller, &tenant_id, || ResourceCommand::Retire { id, at }).await?;
    Ok(StatusCode::NO_CONTENT)
}
