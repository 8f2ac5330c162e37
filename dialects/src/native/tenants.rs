//! Tenants (operator) and API keys (tenant admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use keyledger_domain::check_display_text;
use serde::Deserialize;
use serde_json::{json, Value};

use keyledger_app::tenancy::Revocation;
use keyledger_http::auth::{Caller, Role};
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

const MAX_NAME_LEN: usize = 200;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(create_tenant))
        .add(routes!(create_key))
        .add(routes!(list_keys))
        .add(routes!(revoke_key))
        .add(routes!(settings))
        .add(routes!(edit_settings))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct SettingsRequest {
    require_client_key: Option<bool>,
    /// Percent of a license's seats, 1 to 100.
    #[schema(value_type = Option<u32>)]
    usage_threshold_percent: Option<serde_json::Number>,
}

/// The tenant whose settings the caller may manage: its own admin's, or
/// any for the operator. Another tenant is a 404, as everywhere.
pub(crate) async fn settings_tenant(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<String> {
    let tenant_id = parse_tenant_id(raw_id)?;
    let no_such_tenant = || ApiError::not_found("No such tenant");
    if caller.role == Role::Operator {
        if !state.tenancy.tenant_exists(&tenant_id).await.map_err(ApiError::internal)? {
            return Err(no_such_tenant());
        }
    } else if caller.require_admin()? != tenant_id {
        return Err(no_such_tenant());
    }
    Ok(tenant_id)
}

async fn settings_body(state: &AppState, tenant_id: &str) -> ApiResult<Json<Value>> {
    let tenant = state
        .directory
        .tenant(tenant_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("No such tenant"))?;
    let threshold = state.tenancy.usage_threshold(tenant_id).await.map_err(ApiError::internal)?;
    Ok(Json(json!({
        "tenantId": tenant_id,
        "requireClientKey": tenant.require_client_key,
        "usageThresholdPercent": threshold.unwrap_or(keyledger_app::tenancy::DEFAULT_USAGE_THRESHOLD),
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}/settings",
    tag = "tenants",
    summary = "A tenant's settings (its admin; operator)",
    params(("tenant_id" = String, Path, description = "The tenant id")),
    responses((status = 200, description = "The settings", body = crate::native::schemas::TenantSettings), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn settings(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<Value>> {
    let tenant_id = settings_tenant(&state, &caller, &raw_id).await?;
    settings_body(&state, &tenant_id).await
}

/// `requireClientKey: true` makes the tenant's licenses answer anonymous
/// client calls as if their keys did not exist. `usageThresholdPercent`
/// (1 to 100, 80 at first) is the share of a license's seats whose
/// crossing sends the `license.usage_threshold` webhook.
#[utoipa::path(
    patch,
    path = "/api/v1/tenants/{tenant_id}/settings",
    tag = "tenants",
    summary = "Change a tenant's settings (its admin; operator)",
    params(("tenant_id" = String, Path, description = "The tenant id")), request_body = SettingsRequest,
    responses((status = 200, description = "The settings now", body = crate::native::schemas::TenantSettings), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn edit_settings(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<SettingsRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = settings_tenant(&state, &caller, &raw_id).await?;
    // Checked before anything is changed: a request is all or nothing.
    let threshold = request.usage_threshold_percent.as_ref().map(parse_threshold).transpose()?;
    if let Some(percent) = threshold {
        state.tenancy.set_usage_threshold(&tenant_id, percent).await.map_err(ApiError::internal)?;
        tracing::info!(tenant_id, percent, "usageThresholdPercent set");
    }
    if let Some(required) = request.require_client_key {
        state.directory.set_require_client_key(&tenant_id, required).await.map_err(ApiError::internal)?;
        tracing::info!(tenant_id, required, "requireClientKey set");
    }
    settings_body(&state, &tenant_id).await
}

fn parse_threshold(raw: &serde_json::Number) -> ApiResult<u32> {
    raw.as_u64().filter(|percent| (1..=100).contains(percent)).map(|percent| percent as u32).ok_or_else(|| {
        ApiError::field("usageThresholdPercent", "usageThresholdPercent must be a whole number from 1 to 100")
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantRequest {
    name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct KeyRequest {
    role: Option<String>,
    name: Option<String>,
    /// Only the operator names a tenant; an admin acts in their own.
    tenant_id: Option<String>,
}

/// The tenant a key request acts on: a tenant admin's own, or the one the
/// operator names (which is how a tenant that lost its admin keys gets a
/// new one).
async fn key_tenant(state: &AppState, caller: &Caller, requested: Option<&str>) -> ApiResult<String> {
    if caller.role != Role::Operator {
        let own = caller.require_admin()?;
        return match requested {
            Some(other) if other != own => Err(ApiError::not_found("No such tenant")),
            _ => Ok(own.to_owned()),
        };
    }
    let tenant_id = requested
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::field("tenantId", "tenantId is required when the operator issues a key"))?;
    let tenant_id = &parse_tenant_id(tenant_id)?;
    if state.tenancy.tenant_exists(tenant_id).await.map_err(ApiError::internal)? {
        Ok(tenant_id.to_owned())
    } else {
        Err(ApiError::not_found("No such tenant"))
    }
}

/// A tenant id as the API shows it: a UUID.
pub(super) fn parse_tenant_id(raw: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|id| id.to_string())
        .map_err(|_| ApiError::field("tenantId", "tenantId must be a tenant's id (a UUID)"))
}

/// An API key's id as issued: the part between `klk_` and the next `_`.
fn parse_key_id(raw: &str) -> ApiResult<&str> {
    if (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(raw)
    } else {
        Err(ApiError::field("keyId", "keyId must be an API key's id: letters and digits"))
    }
}

fn parse_name(raw: Option<&str>, required: bool) -> ApiResult<Option<String>> {
    let name = raw.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return if required { Err(ApiError::field("name", "name is required")) } else { Ok(None) };
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::field("name", format!("name must be at most {MAX_NAME_LEN} characters")));
    }
    check_display_text(name).map_err(|e| ApiError::field("name", format!("name {e}")))?;
    Ok(Some(name.to_owned()))
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "tenants",
    summary = "Create a tenant and its first admin key (operator)",
    request_body = TenantRequest,
    responses((status = 201, description = "Created; the admin key is shown only now", body = crate::native::schemas::TenantCreated), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<TenantRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_operator()?;
    let name = parse_name(request.name.as_deref(), true)?.unwrap_or_default();
    let (tenant, admin_key) = state.tenancy.create_tenant(&name).await.map_err(ApiError::internal)?;
    state.directory.add_tenant(&tenant.id).await.map_err(ApiError::internal)?;
    tracing::info!(tenant_id = %tenant.id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": tenant.id,
            "name": tenant.name,
            "adminKey": admin_key.key,
            "adminKeyId": admin_key.id,
            "adminUserId": admin_key.user_id,
        })),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "tenants",
    summary = "Issue an API key: admin, user or client (tenant admin; operator for any tenant)",
    request_body = KeyRequest,
    responses((status = 201, description = "Issued; the key is shown only now", body = crate::native::schemas::KeyIssued), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_key(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    JsonBody(request): JsonBody<KeyRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = &key_tenant(&state, &caller, request.tenant_id.as_deref()).await?;
    let role = match request.role.as_deref().map(str::trim) {
        Some("admin") => Role::Admin,
        Some("user") => Role::User,
        Some("client") => Role::Client,
        Some("system") => return issue_system_key(&state, &context, &caller, tenant_id, request.name.is_some()).await,
        None | Some("") => {
            return Err(ApiError::field("role", "role is required: \"admin\", \"user\", \"client\" or \"system\""))
        }
        Some(_) => return Err(ApiError::field("role", "role must be \"admin\", \"user\", \"client\" or \"system\"")),
    };
    let name = parse_name(request.name.as_deref(), false)?.unwrap_or_else(|| format!("{} key", role.as_str()));
    let key = state.tenancy.create_key(tenant_id, role, &name).await.map_err(ApiError::internal)?;
    tracing::info!(tenant_id, key_id = %key.id, role = role.as_str(), "API key issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": key.id, "key": key.key, "role": role.as_str(), "userId": key.user_id, "name": key.name })),
    ))
}

/// Issues the tenant's system key (the V2 License Server dialect's
/// `X-API-Key`), replacing the one it had: one a tenant at a time. It has
/// no name (the document's keys have none).
async fn issue_system_key(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    tenant_id: &str,
    named: bool,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if named {
        return Err(ApiError::field("name", "a system key has no name: the tenant has one at a time"));
    }
    let metadata = event_metadata(context, Some(caller), tenant_id, chrono::Utc::now());
    let issued = state.system_keys.issue(tenant_id, &metadata).await.map_err(ApiError::internal)?;
    // Every process drops its cache of keys: the replaced key stops
    // working here at once, elsewhere within the directory's poll.
    state.directory.changed().await.map_err(ApiError::internal)?;
    tracing::info!(tenant_id, key_id = %issued.id, replaced = ?issued.replaced, "system key issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": issued.id,
            "key": issued.key,
            "role": "system",
            "name": "system key",
            "replacedKeyId": issued.replaced,
        })),
    ))
}

/// The tenant's live keys, without their secrets (which are not kept).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "tenants",
    summary = "The tenant's live API keys, without secrets (tenant admin)",
    responses((status = 200, description = "Live keys, oldest first", body = Vec<crate::native::schemas::KeyListed>), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_keys(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let keys = state.tenancy.list_keys(tenant_id).await.map_err(ApiError::internal)?;
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|k| json!({ "id": k.id, "role": k.role.as_str(), "userId": k.user_id, "name": k.name, "createdAt": k.created_at }))
        .collect();
    Ok(Json(Value::Array(keys)))
}

/// Tenant admins revoke their tenant's keys; the operator any key.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{key_id}",
    tag = "tenants",
    summary = "Revoke an API key (tenant admin; operator)",
    params(("key_id" = String, Path, description = "The key id, the part between klk_ and the next _")),
    responses((status = 204, description = "Revoked: it stops working at once"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(key_id): PathParam,
) -> ApiResult<StatusCode> {
    let key_id = parse_key_id(&key_id)?;
    let no_such_key = || ApiError::not_found("No such API key");
    let tenant_id = if caller.role == Role::Operator {
        let key = state.tenancy.find_key(key_id).await.map_err(ApiError::internal)?.ok_or_else(no_such_key)?;
        key.tenant_id
    } else {
        caller.require_admin()?.to_owned()
    };
    let revocation = keyledger_app::tenancy::revoke_api_key(&state.tenancy, &state.directory, &tenant_id, key_id);
    match revocation.await.map_err(ApiError::internal)? {
        Revocation::Revoked => Ok(StatusCode::NO_CONTENT),
        Revocation::NotFound => Err(no_such_key()),
        Revocation::LastAdmin => Err(ApiError::bad_request(
            "last_admin_key",
            "This is the tenant's last admin key; issue another admin key before revoking it",
        )
        .with_status(StatusCode::CONFLICT)),
    }
}
