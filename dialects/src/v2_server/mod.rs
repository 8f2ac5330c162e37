//! The V2 License Server dialect (seed 003): its client API at
//! `/api/license/...` and `/api/version/...` under the tenant's system
//! key (or a tenant admin key) in `X-API-Key`, and its sample clients'
//! anonymous `/api/v1/activate` and `/api/v1/validate`. Everything goes
//! through the client service: a license activated here is the license
//! every other dialect and the history see.
//!
//! Its errors are the document's: the exact 401 body for a missing or
//! wrong key, and `{"error": {"code", "message", "details": {"field",
//! "reason"}}}` with the document's statuses for everything else
//! ([`error_body`]). Decisions where the document is silent are in
//! `docs/dialects/v2-server.md`.

mod admin;
mod monitoring;
mod resources;
mod search;
mod wire;

use axum::extract::FromRequestParts;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyledger_app::client::{Activation, Beat, Visible, Wants};
use keyledger_domain::{License, LicenseKey, LicenseStatus, LicenseType, Product};
use serde_json::{json, Value};

use crate::native::licenses::{parse_key, parse_machine};
use keyledger_http::auth::{Caller, ClientCaller, Role};
use keyledger_http::dialect::{answer, client_call, refusal_status, snake_field};
use keyledger_http::error::{ApiError, ErrorParts};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;
use wire::{ActivateRequest, SampleActivateRequest, SampleValidateRequest, VerifyRequest, VersionCheckRequest};

/// The paths of the document's sample clients, served without a key.
const SAMPLE_ACTIVATE: &str = "/api/v1/activate";
const SAMPLE_VALIDATE: &str = "/api/v1/validate";

/// The document's public API: the client calls and the versions.
const PUBLIC_ROUTES: [&str; 7] = [
    "/api/license/activate",
    "/api/license/verify",
    "/api/license/info/{license_key}",
    SAMPLE_ACTIVATE,
    SAMPLE_VALIDATE,
    "/api/version/check",
    "/api/version/latest",
];
/// The document's public rate limit, per address.
const PUBLIC_PER_MINUTE: u32 = 100;

/// The V2 License Server's API (seed 003).
pub struct V2Server;

impl keyledger_http::Dialect for V2Server {
    fn name(&self) -> &'static str {
        "v2-server"
    }

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/api/license/")
            || path.starts_with("/api/licenses/bulk-")
            || path.starts_with("/api/version/")
            || path.starts_with("/api/customer/")
            || path == "/api/customers"
            || path == "/api/generate-license-key"
            || path.starts_with("/api/sessions/")
            || path.starts_with("/api/monitoring/")
            || path.starts_with("/api/admin/")
            || path.starts_with("/api/resources/")
            || path == "/api/global-search"
            || path.starts_with("/leads/")
            || path == SAMPLE_ACTIVATE
            || path == SAMPLE_VALIDATE
    }

    fn routes(&self) -> Routes {
        Routes::new()
            .add(routes!(activate))
            .add(routes!(verify))
            .add(routes!(info))
            .add(routes!(sample_activate))
            .add(routes!(sample_validate))
            .add(routes!(version_check))
            .add(routes!(version_latest))
            .merge(admin::routes())
            .merge(monitoring::routes())
            .merge(resources::routes())
            .merge(search::routes())
    }

    /// The document's public API: 100 requests a minute per address on
    /// each route; past it, 429 until the minute is out (no longer: the
    /// document names no blocks).
    fn route_rules(&self) -> Vec<keyledger_http::dialect::RouteRule> {
        const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);
        PUBLIC_ROUTES
            .iter()
            .map(|route| keyledger_http::dialect::RouteRule {
                route,
                per_minute: PUBLIC_PER_MINUTE,
                block_base: MINUTE,
                block_max: MINUTE,
            })
            .collect()
    }

    /// The document's client API (its public API), limited per address as
    /// the native client endpoints are; the admin API is limited as the
    /// native management API, per key.
    fn is_client_route(&self, route: &str) -> bool {
        PUBLIC_ROUTES.contains(&route)
    }

    fn render_error(
        &self,
        _directory: &keyledger_app::signing::Directory,
        path: &str,
        status: StatusCode,
        error: &ErrorParts,
    ) -> Option<Response> {
        let (status, body) = error_body(path, status, error);
        Some((status, axum::Json(body)).into_response())
    }
}

/// The document's 401, exactly.
fn unauthorized_body() -> Value {
    json!({"error": "Invalid or missing API key", "code": "INVALID_API_KEY", "status": 401})
}

/// An error in the document's shape, with one of its statuses (400, 401,
/// 403, 404, 409, 429, 500), or the status of a failure of the request as
/// HTTP (405, 408, 413, 414, 415). The code is keyledger's in upper case, and
/// `details.reason` keyledger's own; an unknown or malformed license key
/// is the document's `INVALID_LICENSE` (`not_found` or `format_invalid`).
fn error_body(path: &str, status: StatusCode, error: &ErrorParts) -> (StatusCode, Value) {
    if status == StatusCode::UNAUTHORIZED {
        return (status, unauthorized_body());
    }
    let status = match refusal_status(error.code).unwrap_or(status) {
        // Failures of the request as HTTP keep their own status.
        status @ (StatusCode::METHOD_NOT_ALLOWED
        | StatusCode::REQUEST_TIMEOUT
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::URI_TOO_LONG
        | StatusCode::UNSUPPORTED_MEDIA_TYPE) => status,
        status @ (StatusCode::BAD_REQUEST
        | StatusCode::FORBIDDEN
        | StatusCode::NOT_FOUND
        | StatusCode::CONFLICT
        | StatusCode::TOO_MANY_REQUESTS) => status,
        status if status.is_client_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let sample = path == SAMPLE_ACTIVATE || path == SAMPLE_VALIDATE;
    let field = error.field.as_deref().map(|field| wire_field(field, sample));
    let (code, reason) = match error.code {
        "license_not_found" => ("INVALID_LICENSE".to_owned(), "not_found"),
        _ if field.as_deref() == Some("license_key") => ("INVALID_LICENSE".to_owned(), "format_invalid"),
        code => (code.to_ascii_uppercase(), code),
    };
    let body = json!({
        "error": {
            "code": code,
            "message": error.message,
            "details": { "field": field, "reason": reason },
        }
    });
    (status, body)
}

/// This dialect's name for a field the client service names.
fn wire_field(field: &str, sample: bool) -> String {
    match field {
        "machineId" if sample => "hardware_id".to_owned(),
        "machineId" => "hardware_hash".to_owned(),
        "expiresAt" | "expiredAt" => "valid_until".to_owned(),
        other => snake_field(other),
    }
}

/// The caller of the document's key-protected endpoints: the tenant's
/// system key, or a tenant admin key, in `X-API-Key` (or, for clients
/// that only send bearer tokens, `Authorization: Bearer`).
pub(super) struct SystemCaller(pub(super) Caller);

impl FromRequestParts<AppState> for SystemCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let missing = || ApiError::unauthorized("Invalid or missing API key");
        let presented = presented_credential(parts).ok_or_else(missing)?;
        if presented.starts_with("eyJ") {
            // An analytics token reads statistics only.
            return Err(missing());
        }
        let caller = state.auth.authenticate(&presented).await.map_err(|error| {
            if error.status == StatusCode::UNAUTHORIZED {
                missing()
            } else {
                error
            }
        })?;
        match caller.role {
            Role::System | Role::Admin => Ok(SystemCaller(caller)),
            _ => Err(ApiError::forbidden("This needs the tenant's system key or a tenant admin key")),
        }
    }
}

/// A query as a request gave it, or why it could not be read.
pub(super) type RawQuery =
    Result<Query<std::collections::HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// The query's parameters, refusing one not in `allowed` (400 naming it).
pub(super) fn query_of(raw: RawQuery, allowed: &[&str]) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let Query(query) = raw.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if let Some(unknown) = query.keys().find(|name| !allowed.contains(&name.as_str())) {
        let known = match allowed {
            [one] => format!("{one} is"),
            [rest @ .., last] => format!("{} and {last} are", rest.join(", ")),
            [] => "none are".to_owned(),
        };
        return Err(ApiError::field(unknown, format!("{unknown} is not a parameter here ({known})")));
    }
    Ok(query)
}

/// The credential a request presents: `X-API-Key`, else a bearer token.
pub(super) fn presented_credential(parts: &Parts) -> Option<String> {
    let api_key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    let bearer = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    api_key.filter(|key| !key.is_empty()).or(bearer).map(str::to_owned)
}

/// A device holding a seat (`active`) or a past one, as info and the
/// devices list show it. Machine ids are kept only as a keyed hash: that
/// is the `hardware_hash` shown.
pub(super) fn activation_body(device: &keyledger_domain::Device, active: bool) -> Value {
    json!({
        "id": device.number,
        "hardware_hash": device.machine.to_string(),
        "machine_name": device.machine_name.as_str(),
        "activated_at": instant(device.activated_at),
        "last_heartbeat": instant(device.last_heartbeat_at),
        "is_active": active,
    })
}

/// The license's devices holding seats, then its past ones.
pub(super) fn all_devices(license: &License) -> impl Iterator<Item = (&keyledger_domain::Device, bool)> {
    license.devices.iter().map(|device| (device, true)).chain(license.past_devices.iter().map(|device| (device, false)))
}

/// `max_users`, when given: a positive integer.
pub(super) fn parse_max_users(raw: Option<i64>) -> Result<Option<u32>, ApiError> {
    raw.map(|users| {
        u32::try_from(users)
            .ok()
            .filter(|users| *users >= 1)
            .ok_or_else(|| ApiError::field("maxUsers", "max_users must be a positive integer"))
    })
    .transpose()
}

/// A required string field, or 400 naming it (by the client service's
/// name, which [`wire_field`] renders).
pub(super) fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| ApiError::field(field, format!("{} is required", wire_field(field, false))))
}

/// A date as the document writes one.
pub(super) fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Activates `hardware` on the license with `key`, or answers its seat
/// again if it holds one; the document's activation object.
async fn activate_machine(
    state: &AppState,
    context: &RequestContext,
    caller: Option<&Caller>,
    key: &LicenseKey,
    hardware: &str,
    machine_name: Option<&str>,
    app_version: Option<&str>,
) -> Result<Value, ApiError> {
    let session = state.client.open(caller, key, parse_machine(Some(hardware))?).await?;
    let call = client_call(context, caller);
    let activation = Activation { machine_name, app_version };
    let license = state.client.activate(&call, &session.license, &session.machine, activation).await?;
    let device = license.device(&session.machine.hash);
    Ok(json!({
        "message": "License activated successfully",
        "activation": {
            "id": device.and_then(|device| device.number),
            "license_key": key.as_str(),
            "hardware_hash": hardware,
            "machine_name": device.map(|device| device.machine_name.as_str()),
            "activated_at": device.map(|device| instant(device.activated_at)),
            "last_heartbeat": device.map(|device| instant(device.last_heartbeat_at)),
            "is_active": true,
        }
    }))
}

/// Checks that `hardware` holds a seat of the license, recording a
/// heartbeat at most once a minute per activation (the document's
/// heartbeat limit); the document's verify answer. `activation_id`, when
/// given (the sample client's validate), must be that seat's number.
async fn verify_machine(
    state: &AppState,
    context: &RequestContext,
    caller: Option<&Caller>,
    key: &LicenseKey,
    hardware: &str,
    app_version: Option<&str>,
    activation_id: Option<i64>,
) -> Result<Value, ApiError> {
    let session = state.client.open(caller, key, parse_machine(Some(hardware))?).await?;
    if let Some(activation_id) = activation_id {
        let number = session.license.device(&session.machine.hash).and_then(|device| device.number);
        if number.is_some() && number != Some(activation_id) {
            return Err(ApiError::not_found("No activation with this id for this hardware on this license")
                .with_code("activation_not_found")
                .with_field("activationId"));
        }
    }
    let call = client_call(context, caller);
    let wants = Wants { app_version, ..Wants::default() };
    let checked = state.client.check(&call, &session.license, &session.machine, wants, Beat::Heartbeat).await?;
    let checked = checked.map_err(ApiError::refused)?;
    let license = &checked.license;
    let update = checked.update.as_ref();
    Ok(json!({
        "valid": true,
        "message": "License is valid",
        "license": {
            "key": key.as_str(),
            "valid_until": license.expires_at.map(date),
            "max_users": license.policy.max_users,
        },
        "update_available": update.and_then(|u| u.update_available).unwrap_or(false),
        "latest_version": update.and_then(|u| u.latest_version.clone()),
    }))
}

#[utoipa::path(
    post,
    path = "/api/license/activate",
    tag = "v2-server",
    operation_id = "v2_server_activate",
    summary = "Activate a license on a machine",
    request_body = ActivateRequest,
    responses((status = 200, description = "{message, activation}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn activate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    body: Result<JsonBody<ActivateRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let key = parse_key(request.license_key.as_deref())?;
            let hardware = required(&request.hardware_hash, "machineId")?;
            let (name, version) = (request.machine_name.as_deref(), request.app_version.as_deref());
            activate_machine(&state, &context, Some(&caller), &key, hardware, name, version).await
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/api/license/verify",
    tag = "v2-server",
    operation_id = "v2_server_verify",
    summary = "Verify a license on a machine (a heartbeat at most once a minute per activation)",
    request_body = VerifyRequest,
    responses((status = 200, description = "{valid, message, license, update_available, latest_version}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn verify(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<SystemCaller, ApiError>,
    body: Result<JsonBody<VerifyRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let key = parse_key(request.license_key.as_deref())?;
            let hardware = required(&request.hardware_hash, "machineId")?;
            let version = request.app_version.as_deref();
            verify_machine(&state, &context, Some(&caller), &key, hardware, version, None).await
        }
        .await,
    )
}

/// The document's license types: a trial, a license that never expires,
/// or a subscription (one that does).
pub(super) fn license_type(license: &License) -> &'static str {
    match license.license_type {
        LicenseType::Trial => "trial",
        _ if license.expires_at.is_none() && license.expires_after_activation_secs.is_none() => "perpetual",
        _ => "subscription",
    }
}

#[utoipa::path(
    get,
    path = "/api/license/info/{license_key}",
    tag = "v2-server",
    operation_id = "v2_server_info",
    summary = "A license and its activations",
    params(("license_key" = String, Path, description = "XXXX-XXXX-XXXX-XXXX")),
    responses((status = 200, description = "{license, activations}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn info(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    PathParam(raw_key): PathParam,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let key = parse_key(Some(&raw_key))?;
            let Visible { license, .. } = state.client.resolve(Some(&caller), &key).await?;
            caller.may_read(&license)?;
            let customer_name = match &license.customer_id {
                Some(id) => state
                    .customers
                    .get(id.as_str())
                    .await
                    .map_err(ApiError::internal)?
                    .and_then(|customer| customer.record.fields.name),
                None => None,
            };
            let now = Utc::now();
            let activations: Vec<Value> =
                all_devices(&license).map(|(device, active)| activation_body(device, active)).collect();
            Ok(json!({
                "license": {
                    "id": license.number,
                    "key": key.as_str(),
                    "customer_name": customer_name,
                    "type": license_type(&license),
                    "valid_from": license.created_at.map(date),
                    "valid_until": license.expires_at.map(date),
                    "max_activations": license.allowed_devices(),
                    "max_users": license.policy.max_users,
                    "is_active": license.ensure_usable(now).is_ok()
                        && license.status_at(now) != LicenseStatus::Suspended,
                },
                "activations": activations,
            }))
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/api/v1/activate",
    tag = "v2-server",
    operation_id = "v2_server_sample_activate",
    summary = "The document's sample client's activate (no API key)",
    request_body = SampleActivateRequest,
    responses((status = 200, description = "{message, activation}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security((), ("apiKey" = []))
)]
async fn sample_activate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<SampleActivateRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let ClientCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let key = parse_key(request.license_key.as_deref())?;
            let hardware = request
                .hardware_id
                .as_deref()
                .ok_or_else(|| ApiError::field("machineId", "hardware_id is required"))?;
            let (name, version) = (request.machine_name.as_deref(), request.app_version.as_deref());
            activate_machine(&state, &context, caller.as_ref(), &key, hardware, name, version).await
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/api/v1/validate",
    tag = "v2-server",
    operation_id = "v2_server_sample_validate",
    summary = "The document's sample client's validate (no API key)",
    request_body = SampleValidateRequest,
    responses((status = 200, description = "{valid, message, license, update_available, latest_version}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security((), ("apiKey" = []))
)]
async fn sample_validate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<SampleValidateRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let ClientCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let key = parse_key(request.license_key.as_deref())?;
            let hardware = request
                .hardware_id
                .as_deref()
                .ok_or_else(|| ApiError::field("machineId", "hardware_id is required"))?;
            let version = request.app_version.as_deref();
            let activation = request.activation_id;
            verify_machine(&state, &context, caller.as_ref(), &key, hardware, version, activation).await
        }
        .await,
    )
}

/// A release as the document shows one.
fn release_body(release: &keyledger_domain::Release) -> Value {
    json!({
        "version": release.version,
        "release_date": date(release.release_date),
        "download_url": release.download_url,
        "release_notes": release.release_notes,
        "is_mandatory": release.mandatory,
    })
}

/// The newest stable release of `product` out by now.
fn latest_release(product: &Product, now: DateTime<Utc>) -> Option<&keyledger_domain::Release> {
    product
        .releases
        .iter()
        .filter(|release| release.channel == keyledger_domain::STABLE && release.release_date <= now)
        .filter_map(|release| semver::Version::parse(&release.version).ok().map(|version| (version, release)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, release)| release)
}

#[utoipa::path(
    post,
    path = "/api/version/check",
    tag = "v2-server",
    operation_id = "v2_server_version_check",
    summary = "Whether a newer release of the license's product is out",
    request_body = VersionCheckRequest,
    responses((status = 200, description = "{update_available, latest_version, download_url, release_notes, is_mandatory}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn version_check(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    body: Result<JsonBody<VersionCheckRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let JsonBody(request) = body?;
            let key = parse_key(request.license_key.as_deref())?;
            let current = required(&request.current_version, "currentVersion")?;
            let current = semver::Version::parse(current).map_err(|_| {
                ApiError::field("currentVersion", "current_version must be a semantic version such as 1.2.0")
            })?;
            let Visible { license, .. } = state.client.resolve(Some(&caller), &key).await?;
            let product = state.client.product_of(&license).await?;
            let now = Utc::now();
            let releases = product.as_ref().map(|product| product.releases.as_slice()).unwrap_or_default();
            let check = keyledger_domain::check_for_update(releases, &current, now);
            let latest = product.as_deref().and_then(|product| latest_release(product, now));
            Ok(json!({
                "update_available": check.update_available,
                "latest_version": check.latest_version,
                "download_url": latest.and_then(|release| release.download_url.clone()),
                "release_notes": latest.and_then(|release| release.release_notes.clone()),
                "is_mandatory": check.mandatory,
            }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/version/latest",
    tag = "v2-server",
    operation_id = "v2_server_version_latest",
    summary = "The latest release of a product: the one named by `product` (id or code), or the tenant's only one",
    params(("product" = Option<String>, Query, description = "A product's id or code; may be left out when the tenant has one product")),
    responses((status = 200, description = "{version, release_date, download_url, release_notes, is_mandatory}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn version_latest(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    query: RawQuery,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let query = query_of(query, &["product"])?;
            let (tenant_id, _) = caller.tenant()?;
            let product = tenant_product(&state, tenant_id, query.get("product").map(String::as_str)).await?.record;
            let release = latest_release(&product, Utc::now()).ok_or_else(|| {
                ApiError::not_found("The product has no release out yet").with_code("release_not_found")
            })?;
            Ok(release_body(release))
        }
        .await,
    )
}

/// The tenant's product named by id or code, or its only product when
/// none is named, with its version (for a command decided on it).
pub(super) async fn tenant_product(
    state: &AppState,
    tenant_id: &str,
    named: Option<&str>,
) -> Result<keyledger_app::products::StoredProduct, ApiError> {
    let not_found = || ApiError::not_found("No such product").with_code("product_not_found").with_field("product");
    let store_error = |error: keyledger_app::aggregates::CatalogError<_>| match error {
        keyledger_app::aggregates::CatalogError::Store(error) => ApiError::internal(error),
        _ => not_found(),
    };
    let found = match named {
        Some(raw) if uuid::Uuid::parse_str(raw).is_ok() => state.products.get(raw).await.map_err(store_error)?,
        Some(raw) => {
            let code = keyledger_domain::parse_code(raw)
                .map_err(|_| ApiError::field("product", "product must be a product's id (a UUID) or its code"))?;
            let listed = state.products.list(tenant_id, None, 1, "code = $4", &code).await.map_err(store_error)?;
            listed.into_iter().next()
        }
        None => {
            let mut listed = state.products.list(tenant_id, None, 2, "TRUE", "").await.map_err(store_error)?;
            if listed.len() != 1 {
                return Err(ApiError::field(
                    "product",
                    "the tenant has more than one product (or none): name one with ?product=<id or code>",
                ));
            }
            listed.pop()
        }
    };
    found.filter(|stored| stored.record.tenant_id.as_str() == tenant_id && !stored.record.deleted).ok_or_else(not_found)
}
