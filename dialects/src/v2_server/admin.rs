//! The V2 License Server's admin API over licenses, devices and
//! customers, by their integer ids (per-tenant serial numbers). Each
//! change is the same command the native API runs, one per license, with
//! the caller (the system key or a tenant admin) as its actor.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use keyledger_app::client::Activation;
use keyledger_app::generation::NewLicense;
use keyledger_app::switch::{Bulk, Switch, SwitchError};
use keyledger_domain::{License, LicenseCommand, LicenseStatus, Seats};
use keyledger_http::metadata::event_metadata;
use serde_json::{json, Value};

use super::wire::{BulkRequest, GenerateRequest, QuickEditRequest, RegisterDeviceRequest};
use super::{date, license_type, required, tenant_product, SystemCaller};
use crate::native::licenses::{execute_as, parse_machine};
use keyledger_http::auth::Caller;
use keyledger_http::dialect::{answer, client_call};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParam, PathParams, RequestContext};
use keyledger_http::state::AppState;
use utoipa_axum::routes;

/// Most licenses one bulk call names.
pub const MAX_BULK: usize = 1000;
/// Customers a page of the customer search holds (Select2's usual page).
const CUSTOMER_PAGE: i64 = 30;
/// Licenses of one customer answered at most.
const CUSTOMER_LICENSES: i64 = 1000;

pub fn routes() -> keyledger_http::Routes {
    keyledger_http::Routes::new()
        .add(routes!(customers))
        .add(routes!(customer_licenses))
        .add(routes!(customer_stats))
        .add(routes!(toggle))
        .add(routes!(bulk_activate))
        .add(routes!(bulk_deactivate))
        .add(routes!(bulk_delete))
        .add(routes!(quick_edit))
        .add(routes!(generate))
        .add(routes!(devices))
        .add(routes!(register_device))
        .add(routes!(deactivate_device))
}

/// An integer id from the path, or 400 naming `field`.
pub(super) fn integer_id(raw: &str, field: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field(field, format!("{field} must be a positive integer id")))
}

/// The caller's tenant's live license with this number; another tenant's,
/// a deleted one and an unknown number are all 404.
pub(super) async fn license_numbered(state: &AppState, caller: &Caller, number: i64) -> Result<License, ApiError> {
    let (tenant_id, _) = caller.tenant()?;
    let view = state.views.by_number(tenant_id, number).await.map_err(ApiError::internal)?;
    let license = view.map(|view| view.license).filter(|license| !license.deleted);
    let license = license.ok_or_else(ApiError::license_not_found)?;
    caller.may_administer(&license)?;
    Ok(license)
}

/// The document's license status names.
fn status_name(license: &License) -> &'static str {
    match license.status_at(Utc::now()) {
        LicenseStatus::Generated | LicenseStatus::Activated => "active",
        LicenseStatus::Suspended => "suspended",
        LicenseStatus::Expired => "expired",
        LicenseStatus::Revoked => "revoked",
    }
}

fn customer_text(fields: &keyledger_domain::CustomerFields) -> String {
    match (fields.name.as_deref(), fields.email.as_deref()) {
        (Some(name), Some(email)) => format!("{name} - {email}"),
        (Some(only), None) | (None, Some(only)) => only.to_owned(),
        (None, None) => String::new(),
    }
}

#[utoipa::path(
    get,
    path = "/api/customers",
    tag = "v2-server",
    operation_id = "v2_server_customers",
    summary = "Customers by name or email, for a Select2 dropdown (30 a page)",
    params(("q" = Option<String>, Query, description = "Part of a name or email"), ("page" = Option<i64>, Query, description = "From 1")),
    responses((status = 200, description = "{results: [{id, text}], pagination: {more}}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn customers(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    query: super::RawQuery,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let query = super::query_of(query, &["q", "page"])?;
            let page = match query.get("page") {
                None => 1,
                Some(raw) => raw
                    .parse::<i64>()
                    .ok()
                    .filter(|page| (1..=100_000).contains(page))
                    .ok_or_else(|| ApiError::field("page", "page must be an integer from 1 to 100000"))?,
            };
            let q = query.get("q").map(|q| q.trim()).unwrap_or_default();
            if q.chars().count() > 200 {
                return Err(ApiError::field("q", "q must be at most 200 characters"));
            }
            let (tenant_id, _) = caller.tenant()?;
            let pattern = keyledger_app::customers::search_pattern(q);
            let filter = keyledger_app::customers::SEARCH_FILTER;
            let offset = (page - 1) * CUSTOMER_PAGE;
            let found = state
                .customers
                .page(tenant_id, offset, CUSTOMER_PAGE + 1, filter, &pattern)
                .await
                .map_err(ApiError::internal)?;
            let more = found.len() as i64 > CUSTOMER_PAGE;
            let results: Vec<Value> = found
                .iter()
                .take(CUSTOMER_PAGE as usize)
                .map(|stored| json!({ "id": stored.record.number, "text": customer_text(&stored.record.fields) }))
                .collect();
            Ok(json!({ "results": results, "pagination": { "more": more } }))
        }
        .await,
    )
}

/// The tenant's live customer with this number.
async fn customer_numbered(
    state: &AppState,
    tenant_id: &str,
    raw_id: &str,
) -> Result<keyledger_domain::Customer, ApiError> {
    let number = integer_id(raw_id, "customer_id")?;
    let stored = state.customers.by_number(tenant_id, number).await.map_err(ApiError::internal)?;
    stored
        .map(|stored| stored.record)
        .ok_or_else(|| ApiError::not_found("No such customer").with_code("customer_not_found").with_field("customerId"))
}

/// A customer's live licenses (the first [`CUSTOMER_LICENSES`]).
async fn licenses_of(state: &AppState, customer: &keyledger_domain::Customer) -> Result<Vec<License>, ApiError> {
    let views = state
        .views
        .by_customer(customer.tenant_id.as_str(), customer.id.as_str(), None, CUSTOMER_LICENSES)
        .await
        .map_err(ApiError::internal)?;
    Ok(views.into_iter().map(|view| view.license).collect())
}

#[utoipa::path(
    get,
    path = "/api/customer/{customer_id}/licenses",
    tag = "v2-server",
    operation_id = "v2_server_customer_licenses",
    summary = "A customer's licenses",
    params(("customer_id" = i64, Path, description = "The customer's integer id")),
    responses((status = 200, description = "{licenses}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn customer_licenses(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_id): PathParam,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let (tenant_id, _) = caller.tenant()?;
            let customer = customer_numbered(&state, tenant_id, &raw_id).await?;
            let licenses: Vec<Value> = licenses_of(&state, &customer)
                .await?
                .iter()
                .map(|license| {
                    json!({
                        "id": license.number,
                        "license_key": license.license_key.as_ref().map(|key| key.as_str()),
                        "type": license_type(license),
                        "status": status_name(license),
                        "valid_until": license.expires_at.map(date),
                        "max_activations": license.allowed_devices(),
                        "current_activations": license.devices.len(),
                    })
                })
                .collect();
            Ok(json!({ "licenses": licenses }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/customer/{customer_id}/quick-stats",
    tag = "v2-server",
    operation_id = "v2_server_customer_stats",
    summary = "A customer's license counts",
    params(("customer_id" = i64, Path, description = "The customer's integer id")),
    responses((status = 200, description = "{total_licenses, active_licenses, total_activations, total_users}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []), ("bearer" = []))
)]
async fn customer_stats(
    State(state): State<AppState>,
    caller: Result<super::monitoring::StatsCaller, ApiError>,
    PathParam(raw_id): PathParam,
) -> Response {
    answer(
        async {
            let caller = caller?;
            let customer = customer_numbered(&state, caller.tenant()?, &raw_id).await?;
            let licenses = licenses_of(&state, &customer).await?;
            let now = Utc::now();
            let active = licenses.iter().filter(|license| license.ensure_usable(now).is_ok()).count();
            let activations: usize = licenses.iter().map(|license| license.devices.len()).sum();
            let users: u64 = licenses.iter().filter_map(|license| license.policy.max_users).map(u64::from).sum();
            Ok(json!({
                "total_licenses": licenses.len(),
                "active_licenses": active,
                "total_activations": activations,
                "total_users": users,
            }))
        }
        .await,
    )
}

/// The switch of this caller's changes, through this dialect.
fn switch<'a>(
    state: &'a AppState,
    context: &'a RequestContext,
    caller: &'a Caller,
    tenant_id: &'a str,
) -> Switch<'a, impl Fn(chrono::DateTime<Utc>) -> std::collections::HashMap<String, String> + 'a> {
    Switch {
        licenses: &state.licenses,
        resources: &state.resources,
        metadata: move |at| event_metadata(context, Some(caller), tenant_id, at),
    }
}

/// Why a license is switched off through this dialect, in its events.
const SWITCHED_OFF: &str = "deactivated through the V2 License Server API";

fn switch_error(error: SwitchError) -> ApiError {
    match error {
        SwitchError::License(error) => error.into(),
        SwitchError::Resources(error) => crate::native::resources::resource_error(error),
    }
}

#[utoipa::path(
    post,
    path = "/api/license/{license_id}/toggle",
    tag = "v2-server",
    operation_id = "v2_server_toggle",
    summary = "Suspend an active license, or reinstate a suspended one",
    params(("license_id" = i64, Path, description = "The license's integer id")),
    responses((status = 200, description = "{success, is_active, message}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn toggle(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_id): PathParam,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let license = license_numbered(&state, &caller, integer_id(&raw_id, "license_id")?).await?;
            let activate = license.status == LicenseStatus::Suspended;
            switch(&state, &context, &caller, &license.tenant_id)
                .set_active(&license, activate, SWITCHED_OFF)
                .await
                .map_err(switch_error)?;
            let message = if activate { "License activated successfully" } else { "License deactivated successfully" };
            Ok(json!({ "success": true, "is_active": activate, "message": message }))
        }
        .await,
    )
}

/// Runs `bulk` on each license named, one command each: the count of
/// those changed, and the others with why.
async fn run_bulk(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    request: BulkRequest,
    bulk: Bulk,
) -> Result<Value, ApiError> {
    let ids = request.license_ids.ok_or_else(|| ApiError::field("licenseIds", "license_ids is required"))?;
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(ApiError::field("licenseIds", format!("license_ids must name 1 to {MAX_BULK} licenses")));
    }
    let mut changed = 0;
    let mut unchanged = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        let license = match license_numbered(state, caller, id).await {
            Ok(license) => license,
            Err(error) if error.code == "license_not_found" => {
                unchanged.push(json!({ "id": id, "reason": "not_found" }));
                continue;
            }
            Err(error) => return Err(error),
        };
        let outcome = switch(state, context, caller, &license.tenant_id)
            .apply(&license, bulk, SWITCHED_OFF)
            .await
            .map(|done| done.is_some())
            .map_err(switch_error);
        match outcome {
            Ok(true) => changed += 1,
            Ok(false) => {
                let reason = if matches!(bulk, Bulk::Activate) { "already_active" } else { "already_inactive" };
                unchanged.push(json!({ "id": id, "reason": reason }));
            }
            Err(error) if error.status.is_client_error() => {
                unchanged.push(json!({ "id": id, "reason": error.code }));
            }
            Err(error) => return Err(error),
        }
    }
    let message = format!("{changed} licenses {} successfully", bulk.past());
    let counted = if matches!(bulk, Bulk::Delete) { "deleted" } else { "count" };
    Ok(json!({ "success": true, counted: changed, "message": message, "unchanged": unchanged }))
}

macro_rules! bulk_route {
    ($name:ident, $path:literal, $operation:literal, $bulk:expr, $summary:literal) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "v2-server",
            operation_id = $operation,
            summary = $summary,
            request_body = BulkRequest,
            responses((status = 200, description = "{success, count (deleted), message, unchanged: [{id, reason}]}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
            security(("apiKey" = []))
        )]
        async fn $name(
            State(state): State<AppState>,
            context: RequestContext,
            caller: Result<SystemCaller, ApiError>,
            body: Result<JsonBody<BulkRequest>, ApiError>,
        ) -> Response {
            answer(
                async {
                    let SystemCaller(caller) = caller?;
                    let JsonBody(request) = body?;
                    run_bulk(&state, &context, &caller, request, $bulk).await
                }
                .await,
            )
        }
    };
}

bulk_route!(
    bulk_activate,
    "/api/licenses/bulk-activate",
    "v2_server_bulk_activate",
    Bulk::Activate,
    "Reinstate licenses (one command each)"
);
bulk_route!(
    bulk_deactivate,
    "/api/licenses/bulk-deactivate",
    "v2_server_bulk_deactivate",
    Bulk::Deactivate,
    "Suspend licenses (one command each)"
);
bulk_route!(
    bulk_delete,
    "/api/licenses/bulk-delete",
    "v2_server_bulk_delete",
    Bulk::Delete,
    "Delete licenses: LicenseDeleted, one each"
);

#[utoipa::path(
    post,
    path = "/api/license/{license_id}/quick-edit",
    tag = "v2-server",
    operation_id = "v2_server_quick_edit",
    summary = "Change a license's end date, seats or users",
    params(("license_id" = i64, Path, description = "The license's integer id")),
    request_body = QuickEditRequest,
    responses((status = 200, description = "{success, message}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn quick_edit(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_id): PathParam,
    body: Result<JsonBody<QuickEditRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let license = license_numbered(&state, &caller, integer_id(&raw_id, "license_id")?).await?;
            let JsonBody(request) = body?;
            let expires_at = request.valid_until.as_deref().map(parse_date).transpose()?;
            let max_activations = request
                .max_activations
                .map(|raw| Seats::new(raw).map_err(|e| ApiError::field("maxActivations", e.to_string())))
                .transpose()?;
            let policy = super::parse_max_users(request.max_users)?
                .map(|users| keyledger_domain::Policy { max_users: Some(users), ..license.policy.clone() });
            let command = LicenseCommand::EditLicense {
                expires_at,
                max_activations,
                max_connections: None,
                policy,
                customer_id: None,
                at: Utc::now(),
            };
            execute_as(&state, &context, Some(&caller), &license, command).await?;
            Ok(json!({ "success": true, "message": "License updated successfully" }))
        }
        .await,
    )
}

/// A date as the document writes one (`2027-01-01`: midnight UTC).
fn parse_date(raw: &str) -> Result<chrono::DateTime<Utc>, ApiError> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .ok()
        .filter(|date| (2000..=9999).contains(&chrono::Datelike::year(date)))
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| ApiError::field("expiresAt", "valid_until must be a date such as 2027-01-01"))
}

#[utoipa::path(
    post,
    path = "/api/generate-license-key",
    tag = "v2-server",
    operation_id = "v2_server_generate",
    summary = "Generate a license (in the tenant's default product, or the product named) and answer its key",
    request_body = GenerateRequest,
    responses((status = 200, description = "{license_key, id}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn generate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    body: Result<JsonBody<GenerateRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let (tenant_id, owner_id) = caller.tenant()?;
            let license_type = match request.r#type.as_deref() {
                None | Some("perpetual") | Some("subscription") => keyledger_domain::LicenseType::Standard,
                Some("trial") => keyledger_domain::LicenseType::Trial,
                Some(_) => return Err(ApiError::field("type", "type must be perpetual, subscription or trial")),
            };
            let expires_at = request.valid_until.as_deref().map(parse_date).transpose()?;
            if request.r#type.as_deref() == Some("perpetual") && expires_at.is_some() {
                return Err(ApiError::field("expiresAt", "a perpetual license has no valid_until"));
            }
            let seats = Seats::new(request.max_activations.unwrap_or(1))
                .map_err(|e| ApiError::field("maxActivations", e.to_string()))?;
            let max_users = super::parse_max_users(request.max_users)?;
            let customer_id = match request.customer_id {
                Some(number) => Some(customer_numbered(&state, tenant_id, &number.to_string()).await?.id),
                None => None,
            };
            let number = state
                .serials
                .next(tenant_id, keyledger_app::serials::SerialKind::License)
                .await
                .map_err(ApiError::internal)?;
            let mut new =
                NewLicense::new(uuid::Uuid::new_v4().to_string(), tenant_id, owner_id).expiring_at(expires_at);
            new.license_type = license_type;
            new.max_activations = seats;
            new.customer_id = customer_id;
            new.number = Some(number);
            let (state, named) = (&state, request.product.as_deref());
            let license = keyledger_app::generation::generate(
                &state.licenses,
                &new,
                move || async move {
                    match named {
                        Some(named) => Ok(Some(tenant_product(state, tenant_id, Some(named)).await?)),
                        None => Ok(None),
                    }
                },
                |base| {
                    let mut policy = base.clone();
                    if max_users.is_some() {
                        policy.max_users = max_users;
                    }
                    Ok::<_, ApiError>(policy)
                },
                |at| keyledger_http::metadata::event_metadata(&context, Some(&caller), tenant_id, at),
            )
            .await?;
            let key = license.license_key.as_ref().map(|key| key.as_str().to_owned());
            Ok(json!({ "license_key": key, "id": license.number }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/license/{license_id}/devices",
    tag = "v2-server",
    operation_id = "v2_server_devices",
    summary = "A license's devices, those holding seats and past ones",
    params(("license_id" = i64, Path, description = "The license's integer id")),
    responses((status = 200, description = "{devices}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn devices(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_id): PathParam,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let license = license_numbered(&state, &caller, integer_id(&raw_id, "license_id")?).await?;
            let devices: Vec<Value> = super::all_devices(&license)
                .map(|(device, active)| {
                    let mut body = super::activation_body(device, active);
                    body["app_version"] = json!(device.details.app_version.as_deref());
                    body
                })
                .collect();
            Ok(json!({ "devices": devices }))
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/api/license/{license_id}/register-device",
    tag = "v2-server",
    operation_id = "v2_server_register_device",
    summary = "Take a seat of the license for a machine, as an administrator",
    params(("license_id" = i64, Path, description = "The license's integer id")),
    request_body = RegisterDeviceRequest,
    responses((status = 200, description = "{success, device_id, message}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn register_device(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_id): PathParam,
    body: Result<JsonBody<RegisterDeviceRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let license = license_numbered(&state, &caller, integer_id(&raw_id, "license_id")?).await?;
            let JsonBody(request) = body?;
            let hardware = required(&request.hardware_hash, "machineId")?;
            let machine = state.client.machine(parse_machine(Some(hardware))?);
            let call = client_call(&context, Some(&caller));
            let activation = Activation {
                machine_name: request.machine_name.as_deref(),
                app_version: request.app_version.as_deref(),
            };
            let license = state.client.register_device(&call, &license, &machine, activation).await?;
            let number = license.device(&machine.hash).and_then(|device| device.number);
            Ok(json!({ "success": true, "device_id": number, "message": "Device registered successfully" }))
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/api/license/{license_id}/deactivate-device/{device_id}",
    tag = "v2-server",
    operation_id = "v2_server_deactivate_device",
    summary = "Free a device's seat",
    params(("license_id" = i64, Path, description = "The license's integer id"), ("device_id" = i64, Path, description = "The device's integer id")),
    responses((status = 200, description = "{success, message}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn deactivate_device(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    PathParams(raw_license, raw_device): PathParams,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let license = license_numbered(&state, &caller, integer_id(&raw_license, "license_id")?).await?;
            let number = integer_id(&raw_device, "device_id")?;
            let not_found = || {
                ApiError::not_found("No device with this id on this license")
                    .with_code("device_not_found")
                    .with_field("deviceId")
            };
            let active = license.devices.iter().find(|device| device.number == Some(number));
            if active.is_none() {
                // A device that already gave its seat up: nothing to do.
                return match license.past_devices.iter().any(|device| device.number == Some(number)) {
                    true => Ok(json!({ "success": true, "message": "Device deactivated successfully" })),
                    false => Err(not_found()),
                };
            }
            let machine = active.map(|device| device.machine.clone()).ok_or_else(not_found)?;
            let command = LicenseCommand::DeactivateLicense { machine, enforce_transfer_limit: false, at: Utc::now() };
            execute_as(&state, &context, Some(&caller), &license, command).await?;
            Ok(json!({ "success": true, "message": "Device deactivated successfully" }))
        }
        .await,
    )
}
