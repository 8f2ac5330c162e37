//! Seed 002's dialect: `POST /api/licenses/validate` validates a key and
//! activates the calling device when it holds no seat yet and one is
//! free; `POST /api/licenses/deactivate` frees one device or all;
//! `GET /api/licenses/status` shows a license and its active devices.
//! Every validation failure is the same `400 {"statusCode": 400,
//! "statusMessage": "Invalid license key or validation failed"}`, whatever
//! the reason, so nobody learns which keys exist. Each endpoint has the
//! document's own rate limit and progressive blocks ([`route_rules`]).
//!
//! Where the document is silent (README, "Seed 002"): validate is
//! anonymous (or a client key); deactivate and status take the Bearer key
//! of the license's owner or a tenant admin; a device's `device_id` is
//! kept as its name, so status can show it back; validate without a
//! `device_id` checks the license alone.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use keyledger_domain::{License, LicenseError, LicenseStatus, MachineId, MachineName};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::native::licenses::parse_key;
use keyledger_app::client::{self as client, Activation, Beat, Visible, Wants};
use keyledger_http::auth::{Caller, ClientCaller};
use keyledger_http::dialect::FailedGuess;
use keyledger_http::dialect::RouteRule;
use keyledger_http::error::{ApiError, ErrorParts};
use keyledger_http::extract::{JsonBody, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

const VALIDATE: &str = "/api/licenses/validate";
const DEACTIVATE: &str = "/api/licenses/deactivate";
const STATUS: &str = "/api/licenses/status";

/// The one answer to every failed validation.
const VALIDATION_FAILED: &str = "Invalid license key or validation failed";

/// The API style of validate-and-activate with per-endpoint limits and progressive blocks (seed 002).
pub struct DeviceGuard;

impl keyledger_http::Dialect for DeviceGuard {
    fn name(&self) -> &'static str {
        // Recorded in every event this dialect causes: kept as it was.
        "seed002"
    }

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/api/licenses/")
    }

    fn routes(&self) -> Routes {
        routes()
    }

    fn route_rules(&self) -> Vec<RouteRule> {
        route_rules()
    }

    fn is_client_route(&self, _route: &str) -> bool {
        true
    }

    fn render_error(
        &self,
        _directory: &keyledger_app::signing::Directory,
        path: &str,
        status: StatusCode,
        error: &ErrorParts,
    ) -> Option<axum::response::Response> {
        let (status, body) = error_body(path, status, error);
        Some((status, axum::Json(body)).into_response())
    }
}

fn routes() -> Routes {
    Routes::new().add(routes!(validate)).add(routes!(deactivate)).add(routes!(status))
}

const MINUTE: Duration = Duration::from_secs(60);

/// The document's table: requests a minute per address, and the shortest
/// and longest block.
fn route_rules() -> Vec<RouteRule> {
    vec![
        RouteRule { route: VALIDATE, per_minute: 5, block_base: 2 * MINUTE, block_max: 60 * MINUTE },
        RouteRule { route: STATUS, per_minute: 30, block_base: MINUTE, block_max: 10 * MINUTE },
        RouteRule { route: DEACTIVATE, per_minute: 10, block_base: 2 * MINUTE, block_max: 30 * MINUTE },
    ]
}

/// Failures of the request as HTTP (not of the license or its fields),
/// answered with their own status everywhere.
const PROTOCOL: [StatusCode; 5] = [
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::URI_TOO_LONG,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
];

/// An error in seed 002's shape. On validate every failure of the key,
/// the device or the fields is the one generic 400; a rate limit is 429.
fn error_body(path: &str, status: StatusCode, error: &ErrorParts) -> (StatusCode, Value) {
    let status = match error.code {
        "rate_limited" | "blocked" => StatusCode::TOO_MANY_REQUESTS,
        "https_required" => StatusCode::FORBIDDEN,
        _ if PROTOCOL.contains(&status) => status,
        _ if path == VALIDATE => StatusCode::BAD_REQUEST,
        "transfer_limit" => StatusCode::TOO_MANY_REQUESTS,
        "license_not_found" | "route_not_found" => StatusCode::NOT_FOUND,
        "machine_not_activated" | "license_not_activated" => StatusCode::NOT_FOUND,
        _ => status,
    };
    let message = if path == VALIDATE && status == StatusCode::BAD_REQUEST {
        // The one message, whatever the reason.
        VALIDATION_FAILED.to_owned()
    } else {
        match &error.field {
            Some(field) => format!("{}: {}", keyledger_http::dialect::snake_field(field), error.message),
            None => error.message.clone(),
        }
    };
    (status, json!({ "statusCode": status.as_u16(), "statusMessage": message }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LicenseRequest {
    pub license_key: Option<String>,
    /// validate: the device to activate or check; deactivate: the device
    /// to free (all devices when omitted).
    pub device_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StatusQuery {
    pub license_key: Option<String>,
}

/// Seed 002's status names.
fn status_name(license: &License) -> &'static str {
    match license.status_at(Utc::now()) {
        LicenseStatus::Generated | LicenseStatus::Activated => "active",
        LicenseStatus::Suspended => "suspended",
        LicenseStatus::Expired => "expired",
        LicenseStatus::Revoked => "revoked",
    }
}

fn parse_device(raw: &str) -> Result<MachineId, ApiError> {
    MachineId::parse(raw).map_err(|e| ApiError::field("deviceId", e.to_string()))
}

/// The product as the document shows it: null fields for the tenant's
/// default product.
async fn product(state: &AppState, license: &License, with_features: bool) -> Result<Value, ApiError> {
    let product = state.client.product_of(license).await?;
    let mut shown = json!({
        "id": license.product_id,
        "name": product.as_ref().map(|p| p.name.as_str()),
    });
    if with_features {
        shown["features"] = json!(client::features(license, product.as_deref()));
    }
    Ok(shown)
}

#[utoipa::path(
    post,
    path = "/api/licenses/validate",
    tag = "device-guard",
    operation_id = "device_guard_validate",
    summary = "Validate a license key, activating the device when it holds no seat yet",
    request_body = LicenseRequest,
    responses((status = 200, description = "{valid, license}", body = Object), (status = "default", description = "{statusCode, statusMessage}", body = Object)),
    security((), ("bearer" = []))
)]
async fn validate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Response {
    match validate_answer(&state, &context, caller, body).await {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(error) => {
            // Every failure counts towards the address blocks alike, so
            // not even being blocked tells an unknown key from a refused one.
            let mut response = error.into_response();
            response.extensions_mut().insert(FailedGuess);
            response
        }
    }
}

async fn validate_answer(
    state: &AppState,
    context: &RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Result<Value, ApiError> {
    let ClientCaller(caller) = caller?;
    let JsonBody(request) = body?;
    let key = parse_key(request.license_key.as_deref())?;
    let Visible { license, .. } = state.client.resolve(caller.as_ref(), &key).await?;
    let call = keyledger_http::dialect::client_call(context, caller.as_ref());
    let license = match request.device_id.as_deref() {
        None => {
            license.ensure_usable(Utc::now()).map_err(ApiError::refused)?;
            license
        }
        Some(device_id) => {
            let machine = state.client.machine(parse_device(device_id)?);
            let checked = state.client.check(&call, &license, &machine, Wants::default(), Beat::Validate).await?;
            match checked {
                Ok(checked) => checked.license,
                // Not yet on this device: activate it if a seat is free.
                Err(LicenseError::NotActivated | LicenseError::MachineNotActivated) => {
                    // The identifier is kept as the device's name when it
                    // can be one (display text, at most 200 characters).
                    let name = MachineName::parse(Some(device_id)).ok().map(|_| device_id);
                    let activation = Activation { machine_name: name, app_version: None };
                    let activated = state.client.activate(&call, &license, &machine, activation).await;
                    std::sync::Arc::new(activated?)
                }
                Err(reason) => return Err(ApiError::refused(reason)),
            }
        }
    };
    Ok(json!({
        "valid": true,
        "license": {
            "id": license.id,
            "status": status_name(&license),
            "product": product(state, &license, true).await?,
            "activation_date": license.activated_at.map(instant),
            "expiration_date": license.expires_at.map(instant),
            "current_activations": license.devices.len(),
        }
    }))
}

/// The license with the key for a caller that owns it or administers its
/// tenant; another tenant's is unknown.
async fn owned_license(state: &AppState, caller: &Caller, raw_key: Option<&str>) -> Result<Visible, ApiError> {
    let key = parse_key(raw_key)?;
    let visible = state.client.resolve(Some(caller), &key).await?;
    caller.may_read(&visible.license)?;
    Ok(visible)
}

#[utoipa::path(
    post,
    path = "/api/licenses/deactivate",
    tag = "device-guard",
    operation_id = "device_guard_deactivate",
    summary = "Deactivate a license on one device, or on all",
    request_body = LicenseRequest,
    responses((status = 200, description = "{success, message, remaining_activations}", body = Object), (status = "default", description = "{statusCode, statusMessage}", body = Object)),
    security(("bearer" = []))
)]
async fn deactivate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<Caller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Response {
    keyledger_http::dialect::answer(deactivate_answer(&state, &context, caller, body).await)
}

async fn deactivate_answer(
    state: &AppState,
    context: &RequestContext,
    caller: Result<Caller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Result<Value, ApiError> {
    let caller = caller?;
    let JsonBody(request) = body?;
    let Visible { license, .. } = owned_license(state, &caller, request.license_key.as_deref()).await?;
    let (license, message) = match request.device_id.as_deref() {
        Some(device_id) => {
            let machine = state.client.machine(parse_device(device_id)?);
            let call = keyledger_http::dialect::client_call(context, Some(&caller));
            let license = state.client.deactivate(&call, &license, &machine).await?;
            (license, "Device deactivated successfully")
        }
        None => {
            let call = keyledger_http::dialect::client_call(context, Some(&caller));
            let license = state.client.deactivate_all(&call, &license).await?;
            (license, "All devices deactivated successfully")
        }
    };
    let remaining = license.allowed_devices().saturating_sub(license.devices.len() as u32);
    Ok(json!({ "success": true, "message": message, "remaining_activations": remaining }))
}

#[utoipa::path(
    get,
    path = "/api/licenses/status",
    tag = "device-guard",
    operation_id = "device_guard_status",
    summary = "A license's status and its active devices",
    params(StatusQuery),
    responses((status = 200, description = "{license, active_devices}", body = Object), (status = "default", description = "{statusCode, statusMessage}", body = Object)),
    security(("bearer" = []))
)]
async fn status(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    keyledger_http::dialect::answer(status_answer(&state, caller, query).await)
}

async fn status_answer(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Value, ApiError> {
    let caller = caller?;
    let Query(query) = query.map_err(|e| ApiError::field("licenseKey", e.body_text()))?;
    let Visible { license, .. } = owned_license(state, &caller, query.license_key.as_deref()).await?;
    let now = Utc::now();
    let allowed = license.allowed_devices();
    let used = license.devices.len() as u32;
    let days_left = license.expires_at.map(|at| (at - now).num_seconds().max(0).div_euclid(86_400));
    let status = status_name(&license);
    let user = match &license.customer_id {
        Some(customer_id) => {
            let customer = state.customers.get(customer_id).await.map_err(ApiError::internal)?;
            let email = customer.and_then(|c| c.record.fields.email);
            json!({ "id": customer_id, "email": email })
        }
        None => json!({ "id": license.owner_id, "email": null }),
    };
    let devices: Vec<Value> = license
        .devices
        .iter()
        .map(|device| {
            json!({
                "id": device.id(&license.id),
                "device_id": device.machine_name.as_str(),
                "activated_at": instant(device.activated_at),
                "ip_address": device.details.ip.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    Ok(json!({
        "license": {
            "id": license.id,
            "license_key": license.license_key.as_ref().map(|key| key.as_str()),
            "status": status,
            "activation_date": license.activated_at.map(instant),
            "expiration_date": license.expires_at.map(instant),
            "days_until_expiration": days_left,
            "activation_limit": allowed,
            "current_activations": used,
            "available_activations": allowed.saturating_sub(used),
            "is_expired": status == "expired",
            "is_active": status == "active",
            "product": product(state, &license, false).await?,
            "user": user,
        },
        "active_devices": devices,
    }))
}
