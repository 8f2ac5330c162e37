//! The admin panel's staff, managed through the API by the tenant's admin
//! key (or the operator): invite (the answer carries the one-time link),
//! list, remove. A staff member signs in to the panel with the password
//! they set through the link.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use keyledger_app::staff::{normal_email, Staff, StaffRole, INVITATION_TTL};
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, PathParams};
use keyledger_http::state::AppState;
use keyledger_http::{instant, Routes};
use utoipa_axum::routes;

use super::tenants::settings_tenant;

pub fn routes() -> Routes {
    Routes::new().add(routes!(invite, list)).add(routes!(remove))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    /// The person's email: how they sign in (unique across the installation).
    email: Option<String>,
    /// `admin` (sees and changes everything) or `viewer` (sees everything,
    /// changes nothing).
    role: Option<String>,
}

fn staff_json(staff: &Staff) -> Value {
    json!({
        "id": staff.id,
        "email": staff.email,
        "role": staff.role.as_str(),
        "active": staff.active,
        "createdAt": staff.created_at,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/staff",
    tag = "tenants",
    operation_id = "invite_staff",
    summary = "Invite a person to the admin panel (its admin; operator): the answer holds a one-time link, valid 7 days, shown once",
    params(("tenant_id" = String, Path, description = "The tenant id")),
    request_body = InviteRequest,
    responses((status = 201, description = "{id, email, role, active, createdAt, invitationPath, invitationExpiresAt}", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<InviteRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = settings_tenant(&state, &caller, &raw_id).await?;
    let email = request.email.as_deref().ok_or_else(|| ApiError::field("email", "email is required"))?;
    let email = normal_email(email)
        .ok_or_else(|| ApiError::field("email", "email must be an address such as ana@example.com"))?;
    let role = match request.role.as_deref() {
        None => StaffRole::Viewer,
        Some(raw) => StaffRole::parse(raw).ok_or_else(|| ApiError::field("role", "role must be admin or viewer"))?,
    };
    let now = Utc::now();
    let invitation = state.staff.invite(&tenant_id, &email, role, now).await.map_err(ApiError::internal)?;
    let Some(invitation) = invitation else {
        return Err(ApiError::field("email", "This email is taken: it signs in to a panel already")
            .with_code("email_taken")
            .with_status(StatusCode::CONFLICT));
    };
    let mut body = staff_json(&invitation.staff);
    body["invitationPath"] = json!(format!("/invitation/{}", invitation.token));
    body["invitationExpiresAt"] = json!(instant(now + INVITATION_TTL));
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}/staff",
    tag = "tenants",
    operation_id = "list_staff",
    summary = "The tenant's panel staff, by email (its admin; operator)",
    params(("tenant_id" = String, Path, description = "The tenant id")),
    responses((status = 200, description = "{staff: [{id, email, role, active, createdAt}]}", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list(State(state): State<AppState>, caller: Caller, PathParam(raw_id): PathParam) -> ApiResult<Json<Value>> {
    let tenant_id = settings_tenant(&state, &caller, &raw_id).await?;
    let staff = state.staff.of_tenant(&tenant_id).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "staff": staff.iter().map(staff_json).collect::<Vec<_>>() })))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant_id}/staff/{staff_id}",
    tag = "tenants",
    operation_id = "remove_staff",
    summary = "Remove a person from the panel, ending their sessions (its admin; operator)",
    params(("tenant_id" = String, Path, description = "The tenant id"), ("staff_id" = String, Path, description = "The staff member's id")),
    responses((status = 204, description = "Removed"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw_id, staff_id): PathParams,
) -> ApiResult<StatusCode> {
    let tenant_id = settings_tenant(&state, &caller, &raw_id).await?;
    if state.staff.remove(&tenant_id, &staff_id).await.map_err(ApiError::internal)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("No such staff member").with_code("staff_not_found"))
    }
}
