//! Seed 000's license endpoints, plus deactivate, suspend, reinstate and
//! edit. Handlers parse input into domain values, run one command or one
//! read, and map the result to seed 000's shapes.

use axum::extract::State;
use axum::Json;
use chrono::{Datelike, Duration, Utc};
use keyledger_domain::{check_display_text, License, LicenseCommand, LicenseKey, LicenseType, MachineId, Seats};
use serde_json::{json, Value};

use keyledger_app::generation::{self, NewLicense};
use keyledger_app::serials::SerialKind;
use uuid::Uuid;

use crate::native::wire::{EditRequest, GenerateRequest, LicenseResponse, MessageResponse, SuspendRequest};
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

const DEFAULT_VALIDITY_DAYS: i64 = 365;
const MAX_VALIDITY_DAYS: i64 = 36_500;
const MAX_REASON_LEN: usize = 500;
/// Four-digit years keep stored instants sortable as text.
const MAX_EXPIRY_YEAR: i32 = 9999;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(generate))
        .add(routes!(info))
        .add(routes!(revoke))
        .add(routes!(suspend))
        .add(routes!(reinstate))
        .add(routes!(my_licenses))
        .add(routes!(by_id))
        .add(routes!(edit))
        .add(routes!(tenant_licenses))
}

// --- input parsing -------------------------------------------------------------

pub(crate) fn parse_key(raw: Option<&str>) -> ApiResult<LicenseKey> {
    Ok(keyledger_app::client::parse_key(raw)?)
}

pub(crate) fn parse_machine(raw: Option<&str>) -> ApiResult<MachineId> {
    Ok(keyledger_app::client::parse_machine(raw)?)
}

pub(super) fn parse_license_id(raw: &str) -> ApiResult<keyledger_domain::LicenseId> {
    keyledger_domain::LicenseId::parse(raw)
        .map_err(|_| ApiError::field("licenseId", "licenseId must be a UUID (the license's id, not its key)"))
}

/// How long a new license is valid, and from when.
struct Validity {
    from_creation: Option<Duration>,
    from_activation: Option<Duration>,
}

/// `validityDays` (default 365) or `validityMinutes` or `perpetual`, at
/// most one of them, counted from `validityFrom`.
fn parse_validity(request: &GenerateRequest) -> ApiResult<Validity> {
    let given = [request.validity_days.is_some(), request.validity_minutes.is_some(), request.perpetual == Some(true)];
    if given.iter().filter(|given| **given).count() > 1 {
        let field = if request.perpetual == Some(true) { "perpetual" } else { "validityMinutes" };
        return Err(ApiError::field(field, "give at most one of validityDays, validityMinutes and perpetual"));
    }
    let from_activation = match request.validity_from.as_deref() {
        None | Some("creation") => false,
        Some("firstActivation") => true,
        Some(_) => {
            return Err(ApiError::field("validityFrom", "validityFrom must be \"creation\" or \"firstActivation\""))
        }
    };
    let duration = if request.perpetual == Some(true) {
        if from_activation {
            return Err(ApiError::field("validityFrom", "a perpetual license has no validity to start"));
        }
        None
    } else if let Some(minutes) = request.validity_minutes {
        if !(1..=MAX_VALIDITY_DAYS * 24 * 60).contains(&minutes) {
            let max = MAX_VALIDITY_DAYS * 24 * 60;
            return Err(ApiError::field("validityMinutes", format!("validityMinutes must be between 1 and {max}")));
        }
        Some(Duration::minutes(minutes))
    } else {
        let days = request.validity_days.unwrap_or(DEFAULT_VALIDITY_DAYS);
        if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
            return Err(ApiError::field(
                "validityDays",
                format!("validityDays must be between 1 and {MAX_VALIDITY_DAYS}"),
            ));
        }
        Some(Duration::days(days))
    };
    Ok(if from_activation {
        Validity { from_creation: None, from_activation: duration }
    } else {
        Validity { from_creation: duration, from_activation: None }
    })
}

fn parse_seats(raw: i64) -> ApiResult<Seats> {
    Seats::new(raw).map_err(|e| ApiError::field("maxActivations", e.to_string()))
}

fn parse_max_connections(raw: i64) -> ApiResult<u32> {
    u32::try_from(raw).map_err(|_| ApiError::field("maxConnections", "maxConnections must be between 0 and 4294967295"))
}

// --- lookups -----------------------------------------------------------------------

/// The license with this id if the caller may see it at all.
pub(super) async fn readable_license(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<License> {
    let license = license_on_record(state, caller, raw_id).await?;
    if license.deleted {
        // A deleted license is gone for every caller (its history is not).
        return Err(ApiError::license_not_found());
    }
    Ok(license)
}

/// The license with this id if the caller may see it, deleted or not:
/// for its history, which stays readable to its tenant's admins and the
/// operator after a deletion.
pub(super) async fn license_on_record(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<License> {
    let id = parse_license_id(raw_id)?;
    let view = state.views.by_id(&id).await.map_err(ApiError::internal)?.ok_or_else(ApiError::license_not_found)?;
    if view.license.deleted {
        caller.may_administer(&view.license)?;
    } else {
        caller.may_read(&view.license)?;
    }
    Ok(view.license)
}

pub(super) async fn administrable_license(state: &AppState, caller: &Caller, raw_id: &str) -> ApiResult<License> {
    let id = parse_license_id(raw_id)?;
    let view = state.views.by_id(&id).await.map_err(ApiError::internal)?;
    // A deleted license is gone for every caller (its history is not).
    let view = view.filter(|view| !view.license.deleted).ok_or_else(ApiError::license_not_found)?;
    caller.may_administer(&view.license)?;
    Ok(view.license)
}

/// Runs a command on behalf of an authenticated caller.
pub(crate) async fn execute_as(
    state: &AppState,
    context: &RequestContext,
    caller: Option<&Caller>,
    license: &License,
    command: LicenseCommand,
) -> ApiResult<License> {
    let metadata = event_metadata(context, caller, &license.tenant_id, Utc::now());
    Ok(state.licenses.execute(&license.id, command, metadata).await?)
}

// --- authenticated endpoints -------------------------------------------------------

/// Creates a license owned by the calling user.
#[utoipa::path(
    post,
    path = "/generate",
    tag = "licenses",
    summary = "Generate a license owned by the caller",
    request_body = GenerateRequest,
    responses((status = 200, description = "The new license", body = LicenseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn generate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    JsonBody(request): JsonBody<GenerateRequest>,
) -> ApiResult<Json<LicenseResponse>> {
    let (tenant_id, owner_id) = caller.tenant()?;
    let license_type = LicenseType::from_code(request.license_type.unwrap_or(LicenseType::Standard as i64))
        .map_err(|e| ApiError::field("licenseType", e.to_string()))?;
    let validity = parse_validity(&request)?;
    let max_connections = request.max_connections.map(parse_max_connections).transpose()?;
    let max_activations = parse_seats(request.max_activations.unwrap_or(1))?;
    let features = super::products::checked_features(request.features.as_deref().unwrap_or_default())?;
    let customer_id = match request.customer_id.as_deref() {
        Some(raw) => Some(super::customers::tenant_customer_id(&state, tenant_id, raw).await?),
        None => None,
    };
    let number = state.serials.next(tenant_id, SerialKind::License).await.map_err(ApiError::internal)?;
    let mut new = NewLicense::new(Uuid::new_v4().to_string(), tenant_id, owner_id);
    new.license_type = license_type;
    new.max_activations = max_activations;
    new.max_connections = max_connections;
    new.expires_at = Box::new(move |now| validity.from_creation.map(|validity| now + validity));
    new.expires_after_activation_secs = validity.from_activation.map(|validity| validity.num_seconds());
    new.features = features;
    new.customer_id = customer_id.map(keyledger_domain::CustomerId::trusted);
    new.number = Some(number);
    let (state, product_id) = (&state, request.product_id.as_deref());
    let license = generation::generate(
        &state.licenses,
        &new,
        move || async move {
            match product_id {
                Some(raw) => Ok(Some(super::products::tenant_product(state, tenant_id, raw).await?)),
                None => Ok(None),
            }
        },
        // A product's policy is where the license's starts from.
        |base| match &request.policy {
            Some(fields) => super::policy::apply(base, fields),
            None => Ok(base.clone()),
        },
        |now| event_metadata(&context, Some(&caller), tenant_id, now),
    )
    .await?;
    Ok(Json(LicenseResponse::new(&license, license.created_at.unwrap_or_else(Utc::now))))
}

#[utoipa::path(
    get,
    path = "/info/{license_key}",
    tag = "licenses",
    summary = "A license by its key (owner, tenant admin, operator)",
    params(("license_key" = String, Path, description = "XXXX-XXXX-XXXX-XXXX")),
    responses((status = 200, description = "The license", body = LicenseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn info(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_key): PathParam,
) -> ApiResult<Json<LicenseResponse>> {
    let key = parse_key(Some(&raw_key))?;
    let view = state.views.by_key(&key).await.map_err(ApiError::internal)?;
    let view = view.filter(|view| !view.license.deleted).ok_or_else(ApiError::license_not_found)?;
    caller.may_read(&view.license)?;
    Ok(Json(LicenseResponse::new(&view.license, Utc::now())))
}

#[utoipa::path(
    get,
    path = "/{license_id}",
    tag = "licenses",
    summary = "A license by id (owner, tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")),
    responses((status = 200, description = "The license", body = LicenseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn by_id(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<LicenseResponse>> {
    let license = readable_license(&state, &caller, &raw_id).await?;
    Ok(Json(LicenseResponse::new(&license, Utc::now())))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantListQuery {
    tenant_id: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/licenses`: every license of the admin's tenant (the
/// operator names one with `tenantId`), oldest first, `limit` (1–1000,
/// default 100) at a time; `nextAfter` continues.
#[utoipa::path(
    get,
    path = "/",
    tag = "licenses",
    summary = "Every license of the tenant, oldest first (tenant admin; operator with tenantId)",
    params(("tenantId" = Option<String>, Query, description = "The operator names the tenant"), ("after" = Option<String>, Query, description = "License id to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of licenses", body = crate::native::schemas::LicensePage), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn tenant_licenses(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<TenantListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let tenant_id = match caller.role {
        keyledger_http::auth::Role::Operator => super::tenants::parse_tenant_id(
            query
                .tenant_id
                .as_deref()
                .ok_or_else(|| ApiError::field("tenantId", "tenantId is required for the operator"))?,
        )?,
        _ => caller.require_admin()?.to_owned(),
    };
    let limit = keyledger_http::extract::bounded_integer(query.limit.as_deref(), "limit", 100, (1, 1000))?;
    if let Some(after) = &query.after {
        parse_license_id(after).map_err(|_| ApiError::field("after", "after must be a license id"))?;
    }
    let views = state.views.by_tenant(&tenant_id, query.after.as_deref(), limit).await.map_err(ApiError::internal)?;
    let now = Utc::now();
    let next_after = (views.len() as i64 == limit).then(|| views.last().map(|v| v.license.id.clone())).flatten();
    let licenses: Vec<LicenseResponse> = views.iter().map(|v| LicenseResponse::new(&v.license, now)).collect();
    Ok(Json(json!({ "licenses": licenses, "nextAfter": next_after })))
}

#[utoipa::path(
    get,
    path = "/my-licenses",
    tag = "licenses",
    summary = "The caller's own licenses",
    responses((status = 200, description = "The licenses", body = Vec<LicenseResponse>), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn my_licenses(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<LicenseResponse>>> {
    // The operator belongs to no tenant and owns no licenses.
    let (Some(tenant_id), Some(owner_id)) = (&caller.tenant_id, &caller.user_id) else {
        return Ok(Json(Vec::new()));
    };
    let views = state.views.by_owner(tenant_id, owner_id).await.map_err(ApiError::internal)?;
    let now = Utc::now();
    Ok(Json(views.iter().map(|v| LicenseResponse::new(&v.license, now)).collect()))
}

/// Seed 000's revoke: release the machine so the key can move to another.
#[utoipa::path(
    post,
    path = "/revoke/{license_id}",
    tag = "licenses",
    summary = "Reset a license for transfer: every machine released",
    params(("license_id" = String, Path, description = "The license id (a UUID)")),
    responses((status = 200, description = "Reset", body = crate::native::schemas::Message), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<MessageResponse>> {
    let license = readable_license(&state, &caller, &raw_id).await?;
    let command = LicenseCommand::RevokeLicense { at: Utc::now() };
    execute_as(&state, &context, Some(&caller), &license, command).await?;
    Ok(Json(MessageResponse::ok("License has been revoked and reset. It can now be activated on another machine.")))
}

#[utoipa::path(
    post,
    path = "/suspend/{license_id}",
    tag = "licenses",
    summary = "Suspend a license (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")), request_body = SuspendRequest,
    responses((status = 200, description = "The license now", body = LicenseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn suspend(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<SuspendRequest>,
) -> ApiResult<Json<LicenseResponse>> {
    let license = administrable_license(&state, &caller, &raw_id).await?;
    let reason = request.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if let Some(reason) = &reason {
        if reason.chars().count() > MAX_REASON_LEN {
            return Err(ApiError::field("reason", format!("reason must be at most {MAX_REASON_LEN} characters")));
        }
        check_display_text(reason).map_err(|e| ApiError::field("reason", format!("reason {e}")))?;
    }
    let now = Utc::now();
    let command = LicenseCommand::SuspendLicense { reason, at: now };
    let license = execute_as(&state, &context, Some(&caller), &license, command).await?;
    Ok(Json(LicenseResponse::new(&license, now)))
}

#[utoipa::path(
    post,
    path = "/reinstate/{license_id}",
    tag = "licenses",
    summary = "Lift a suspension (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")),
    responses((status = 200, description = "The license now", body = LicenseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn reinstate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<LicenseResponse>> {
    let license = administrable_license(&state, &caller, &raw_id).await?;
    let now = Utc::now();
    let license =
        execute_as(&state, &context, Some(&caller), &license, LicenseCommand::ReinstateLicense { at: now }).await?;
    Ok(Json(LicenseResponse::new(&license, now)))
}

/// An administrator changes expiry, seats, the connection cap, the
/// policy or the customer.
#[utoipa::path(
    patch,
    path = "/{license_id}",
    tag = "licenses",
    summary = "Edit expiry, seats, the connection cap, the policy or the customer (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")), request_body = EditRequest,
    responses((status = 200, description = "The license now", body = LicenseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn edit(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<EditRequest>,
) -> ApiResult<Json<LicenseResponse>> {
    let license = administrable_license(&state, &caller, &raw_id).await?;
    if request.expired_at.is_some_and(|t| t.year() > MAX_EXPIRY_YEAR) {
        return Err(ApiError::field("expiredAt", format!("expiredAt must be before the year {}", MAX_EXPIRY_YEAR + 1)));
    }
    let max_activations = request.max_activations.map(parse_seats).transpose()?;
    let max_connections = match request.max_connections {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(parse_max_connections(raw)?)),
    };
    let policy = request.policy.as_ref().map(|fields| super::policy::apply(&license.policy, fields)).transpose()?;
    let customer_id = match request.customer_id.as_ref() {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(keyledger_domain::CustomerId::trusted(
            super::customers::tenant_customer_id(&state, &license.tenant_id, raw).await?,
        ))),
    };
    let now = Utc::now();
    let command = LicenseCommand::EditLicense {
        expires_at: request.expired_at,
        max_activations,
        max_connections,
        policy,
        customer_id,
        at: now,
    };
    let license = execute_as(&state, &context, Some(&caller), &license, command).await?;
    Ok(Json(LicenseResponse::new(&license, now)))
}
