//! Anomaly detection as a tenant's admins see it: the thresholds and the
//! action (`/api/v1/anomaly-settings`), the anomalies found, resolving
//! one, and seed 003's statistics. The operator sees every tenant's
//! anomalies; settings belong to a tenant's admins.

use axum::extract::State;
use axum::Json;
use keyledger_app::anomalies::{Anomaly, AnomalyFilter, ResolveError};
use keyledger_domain::AnomalyKind;
use serde::Deserialize;
use serde_json::{json, Value};

use keyledger_http::auth::{Caller, Role};
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

const MAX_NOTE: usize = 1000;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(show_anomaly_settings, edit_anomaly_settings))
        .add(routes!(list_anomalies))
        .add(routes!(show_anomaly))
        .add(routes!(resolve_anomaly))
}

/// Whose anomalies the caller sees: its tenant's (an admin) or every
/// tenant's (the operator, None).
fn scope(caller: &Caller) -> ApiResult<Option<&str>> {
    match (caller.role, caller.tenant_id.as_deref()) {
        (Role::Operator, _) => Ok(None),
        (Role::Admin, Some(tenant)) => Ok(Some(tenant)),
        _ => Err(ApiError::forbidden("Only a tenant admin or the operator may see anomalies")),
    }
}

/// An anomaly as the API shows it.
fn render(anomaly: &Anomaly) -> Value {
    let evidence = &anomaly.evidence;
    let list = |name: &str| evidence.get(name).cloned().unwrap_or_else(|| json!([]));
    json!({
        "id": anomaly.id,
        "type": anomaly.kind,
        "licenseId": anomaly.license_id,
        "tenantId": anomaly.tenant_id,
        "evidence": {
            "eventIds": list("event_ids"),
            "count": evidence["count"],
            "threshold": evidence["threshold"],
            "windowStartedAt": evidence["window_started_at"],
            "windowEndedAt": evidence["window_ended_at"],
            "addresses": list("addresses"),
            "machines": list("machines"),
            "trailingPerHour": evidence.get("trailing_per_hour").cloned().unwrap_or(Value::Null),
        },
        "detectedAt": anomaly.detected_at,
        "eventId": anomaly.event_id,
        "resolved": anomaly.resolved_at.is_some(),
        "resolvedAt": anomaly.resolved_at,
        "resolvedBy": anomaly.resolved_by,
        "resolutionNote": anomaly.resolution_note,
    })
}

fn no_such_anomaly() -> ApiError {
    ApiError::not_found("No such anomaly")
}

fn parse_id(raw: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(raw).map(|id| id.to_string()).map_err(|_| no_such_anomaly())
}

#[utoipa::path(
    get,
    path = "/api/v1/anomaly-settings",
    tag = "anomalies",
    summary = "The tenant's anomaly thresholds and action (tenant admin)",
    responses((status = 200, description = "The settings, defaults included", body = crate::native::schemas::AnomalySettings), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn show_anomaly_settings(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let settings = state.anomaly_settings.store().settings(tenant_id).await.map_err(ApiError::internal)?;
    Ok(Json(json!(settings)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/anomaly-settings",
    tag = "anomalies",
    summary = "Change some of the tenant's anomaly settings; what is not named stays (tenant admin)",
    request_body = crate::native::schemas::AnomalySettingsPatch,
    responses((status = 200, description = "The settings after the change", body = crate::native::schemas::AnomalySettings), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn edit_anomaly_settings(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let changed = state
        .anomaly_settings
        .update(tenant_id, |current| current.patched(&patch))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            let code = if e.unknown { "unknown_field" } else { "invalid_field" };
            ApiError::field(&e.field, e.to_string()).with_code(code)
        })?;
    tracing::info!(tenant_id, "anomaly settings changed");
    Ok(Json(json!(changed)))
}

#[derive(Deserialize)]
struct ListQuery {
    r#type: Option<String>,
    #[serde(rename = "licenseId")]
    license_id: Option<String>,
    resolved: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/anomalies",
    tag = "anomalies",
    summary = "Anomalies found, newest first (tenant admin: the tenant's; operator: all)",
    params(
        ("type" = Option<String>, Query, description = "license_hopping, unusual_activation_pattern or excessive_heartbeats"),
        ("licenseId" = Option<String>, Query, description = "Only this license's"),
        ("resolved" = Option<bool>, Query, description = "true or false"),
        ("before" = Option<String>, Query, description = "An anomaly id: the page after it (older)"),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 100"),
    ),
    responses((status = 200, description = "A page of anomalies", body = crate::native::schemas::AnomalyPage), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_anomalies(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let tenant_id = scope(&caller)?;
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if let Some(kind) = &query.r#type {
        if AnomalyKind::parse(kind).is_none() {
            return Err(ApiError::field(
                "type",
                "type must be license_hopping, unusual_activation_pattern or excessive_heartbeats",
            ));
        }
    }
    let resolved = match query.resolved.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::field("resolved", "resolved must be true or false")),
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(
            uuid::Uuid::parse_str(raw)
                .map_err(|_| ApiError::field("before", "before must be an anomaly id as listed"))?
                .to_string(),
        ),
    };
    let limit = keyledger_http::extract::bounded_integer(query.limit.as_deref(), "limit", 100, (1, 500))?;
    let filter = AnomalyFilter { kind: query.r#type, license_id: query.license_id, resolved, before, limit };
    let page = state.anomaly_settings.store().list(tenant_id, &filter).await.map_err(ApiError::internal)?;
    let next_before = (page.len() as i64 == limit).then(|| page.last().map(|a| a.id.clone())).flatten();
    Ok(Json(json!({ "anomalies": page.iter().map(render).collect::<Vec<_>>(), "nextBefore": next_before })))
}

#[utoipa::path(
    get,
    path = "/api/v1/anomalies/{id}",
    tag = "anomalies",
    summary = "One anomaly with its evidence",
    params(("id" = String, Path, description = "The anomaly id")),
    responses((status = 200, description = "The anomaly", body = crate::native::schemas::AnomalyRecord), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn show_anomaly(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<Value>> {
    let tenant_id = scope(&caller)?;
    let id = parse_id(&raw_id)?;
    let anomaly = state.anomaly_settings.store().get(tenant_id, &id).await.map_err(ApiError::internal)?;
    Ok(Json(render(&anomaly.ok_or_else(no_such_anomaly)?)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveRequest {
    /// Why it is resolved, for the log (at most 1000 characters).
    note: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/anomalies/{id}/resolve",
    tag = "anomalies",
    summary = "Resolve an anomaly: an AnomalyResolved event on its license; its kind may be found again",
    params(("id" = String, Path, description = "The anomaly id")),
    request_body = ResolveRequest,
    responses((status = 200, description = "The anomaly, resolved", body = crate::native::schemas::AnomalyRecord), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn resolve_anomaly(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<ResolveRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = scope(&caller)?;
    let id = parse_id(&raw_id)?;
    let note = request.note.filter(|note| !note.trim().is_empty());
    if let Some(note) = &note {
        if note.chars().count() > MAX_NOTE {
            return Err(ApiError::field("note", format!("note must be at most {MAX_NOTE} characters")));
        }
        keyledger_domain::check_display_text(note).map_err(|e| ApiError::field("note", format!("note: {e}")))?;
    }
    let resolved = keyledger_app::anomalies::resolve(
        &state.licenses,
        state.anomaly_settings.store(),
        tenant_id,
        &id,
        note,
        &caller.key_id,
        |anomaly, at| keyledger_http::metadata::event_metadata(&context, Some(&caller), &anomaly.tenant_id, at),
    )
    .await;
    let anomaly = match resolved {
        Ok(anomaly) => anomaly,
        Err(ResolveError::NotFound) => return Err(no_such_anomaly()),
        Err(ResolveError::Resolved) => {
            return Err(ApiError::bad_request("anomaly_resolved", "The anomaly is resolved already")
                .with_status(axum::http::StatusCode::CONFLICT))
        }
        Err(ResolveError::Store(error)) => return Err(ApiError::internal(error)),
        Err(ResolveError::Command(error)) => return Err(error.into()),
    };
    Ok(Json(render(&anomaly)))
}
