//! Seed 004's dialect: a tenant's software calls `/v1/...` with the
//! tenant's API key as a Bearer token (a publishable client key is
//! enough), receives a signed JWT license token on activation, refreshes
//! it with verify, keeps its activation alive with heartbeat and frees its
//! seat with deactivate. Errors are `{"ok": false, "error": "..."}`.
//!
//! Where the document is silent (README, "Seed 004"): the paths; the
//! tokens are the native offline license tokens (EdDSA, the tenant's
//! keys, its JWKS); a license of another product is 403; a token sent to
//! verify only has to carry a valid signature of one of the tenant's keys
//! (its expiry does not matter: verify checks the license live and hands
//! out a fresh one); a heartbeat is recorded at most once a minute
//! (KEYLEDGER_HEARTBEAT_FLOOR_SECS), like the native one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use keyledger_domain::{License, LicenseError, LicenseKey};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::native::licenses::{parse_key, parse_machine};
use keyledger_app::client::{Activation, Beat, Machine, Session, Wants};
use keyledger_app::signing::jws;
use keyledger_http::auth::{Caller, ClientCaller};
use keyledger_http::error::{ApiError, ErrorParts};
use keyledger_http::extract::{JsonBody, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

/// The API style of tenant API keys and Ed25519 license tokens (seed 004).
pub struct TenantJwt;

impl keyledger_http::Dialect for TenantJwt {
    fn name(&self) -> &'static str {
        // Recorded in every event this dialect causes: kept as it was.
        "seed004"
    }

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/v1/")
    }

    fn routes(&self) -> Routes {
        routes()
    }

    fn is_client_route(&self, route: &str) -> bool {
        route != "/v1/public-key"
    }

    fn render_error(
        &self,
        _directory: &keyledger_app::signing::Directory,
        path: &str,
        status: StatusCode,
        error: &ErrorParts,
    ) -> Option<axum::response::Response> {
        let _ = path;
        let (status, body) = error_body(status, error);
        Some((status, axum::Json(body)).into_response())
    }
}

fn routes() -> Routes {
    Routes::new()
        .add(routes!(public_key))
        .add(routes!(activate))
        .add(routes!(verify))
        .add(routes!(deactivate))
        .add(routes!(heartbeat))
}

/// An error in seed 004's shape: `{"ok": false, "error"}` (and keyledger's
/// `code`), with the document's statuses.
fn error_body(status: StatusCode, error: &ErrorParts) -> (StatusCode, Value) {
    let status = keyledger_http::dialect::refusal_status(error.code).unwrap_or(match error.code {
        "forbidden" => StatusCode::FORBIDDEN,
        "unauthorized" | "malformed_authorization" => StatusCode::UNAUTHORIZED,
        _ => status,
    });
    let message = match &error.field {
        Some(field) => format!("{}: {}", keyledger_http::dialect::snake_field(field), error.message),
        None => error.message.clone(),
    };
    (status, json!({ "ok": false, "error": message, "code": error.code }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ActivateRequest {
    pub license_key: Option<String>,
    pub product_id: Option<String>,
    pub machine_id: Option<String>,
    pub machine_name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    pub license_key: Option<String>,
    pub machine_id: Option<String>,
    /// A token from activate or verify: the key and product are taken
    /// from it.
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MachineRequest {
    pub license_key: Option<String>,
    pub machine_id: Option<String>,
}

/// The caller's tenant: seed 004 wants a tenant's key on every call.
fn tenant_caller(caller: Result<ClientCaller, ApiError>) -> Result<Caller, ApiError> {
    let ClientCaller(caller) = caller?;
    let caller = caller.ok_or_else(|| ApiError::unauthorized("An API key is required: Authorization: Bearer <key>"))?;
    if caller.tenant_id.is_none() {
        return Err(ApiError::forbidden("A tenant's API key is required"));
    }
    Ok(caller)
}

fn required<'a>(raw: Option<&'a str>, field: &str) -> Result<&'a str, ApiError> {
    raw.filter(|value| !value.trim().is_empty()).ok_or_else(|| ApiError::field(field, format!("{field} is required")))
}

/// The id of the product `raw` names: a product id, or a product's code.
/// Software written for another service sends that service's product
/// id; a vendor moving to keyledger gives its product that code and
/// changes nothing in the software. A code that is not the license's
/// product's is a product mismatch, as another product's id is.
async fn product_named(state: &AppState, license: &License, raw: &str) -> Result<String, ApiError> {
    if let Ok(id) = uuid::Uuid::parse_str(raw) {
        return Ok(id.to_string());
    }
    let code = keyledger_domain::parse_code(raw)
        .map_err(|_| ApiError::field("productId", "product_id must be a product's id (a UUID) or its code"))?;
    match state.client.product_of(license).await? {
        Some(product) if product.code == code => Ok(product.id.to_string()),
        _ => Err(ApiError::refused(LicenseError::ProductMismatch)),
    }
}

/// The activation of `machine` on `license`, as seed 004 shows it.
fn activation(license: &License, machine: &Machine, machine_id: &str) -> Value {
    let device = license.device(&machine.hash);
    json!({
        "id": device.map(|device| device.id(&license.id)),
        "license_id": license.id,
        "machine_id": machine_id,
        "machine_name": device.map(|device| device.machine_name.as_str()),
        "activated_at": device.map(|device| instant(device.activated_at)),
        "last_seen_at": device.map(|device| instant(device.last_heartbeat_at)),
    })
}

fn license_summary(license: &License) -> Value {
    json!({
        "id": license.id,
        "status": license.status_at(Utc::now()),
        "product_id": license.product_id,
        "expires_at": license.expires_at.map(instant),
        "seats": license.max_activations.get(),
        "seats_used": license.devices.len(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/public-key",
    tag = "tenant-jwt",
    operation_id = "tenant_jwt_public_key",
    summary = "The tenant's current Ed25519 public key, to bundle with client software",
    responses((status = 200, description = "PEM, raw base64 and JWK of the key", body = Object), (status = "default", description = "{ok: false, error}", body = Object)),
    security(("bearer" = []))
)]
async fn public_key(State(state): State<AppState>, caller: Result<ClientCaller, ApiError>) -> Response {
    keyledger_http::dialect::answer(public_key_answer(&state, caller).await)
}

async fn public_key_answer(state: &AppState, caller: Result<ClientCaller, ApiError>) -> Result<Value, ApiError> {
    let caller = tenant_caller(caller)?;
    let tenant_id = caller.tenant_id.as_deref().unwrap_or_default();
    let keys = state.directory.tenant(tenant_id).await.map_err(ApiError::internal)?;
    let keys = keys.ok_or_else(|| ApiError::not_found("The tenant has no signing key"))?;
    let current = &keys.current;
    let raw = current.key.verifying_key().to_bytes();
    Ok(json!({
        "ok": true,
        "algorithm": "Ed25519",
        "kid": current.kid,
        "public_key": jws::ed25519_public_pem(&raw),
        "public_key_base64": STANDARD.encode(raw),
        "jwk": jws::jwk(&current.kid, &jws::public_x(&current.key)),
        "jwks_url": format!("/api/v1/tenants/{tenant_id}/jwks.json"),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/activate",
    tag = "tenant-jwt",
    operation_id = "tenant_jwt_activate",
    summary = "Activate a license on a device: a signed JWT license token",
    request_body = ActivateRequest,
    responses((status = 200, description = "The token and the activation", body = Object), (status = "default", description = "{ok: false, error}", body = Object)),
    security(("bearer" = []))
)]
async fn activate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ActivateRequest>, ApiError>,
) -> Response {
    keyledger_http::dialect::answer(activate_answer(&state, &context, caller, body).await)
}

async fn activate_answer(
    state: &AppState,
    context: &RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ActivateRequest>, ApiError>,
) -> Result<Value, ApiError> {
    let caller = tenant_caller(caller)?;
    let JsonBody(request) = body?;
    let key = parse_key(Some(required(request.license_key.as_deref(), "license_key")?))?;
    let product = required(request.product_id.as_deref(), "product_id")?.trim();
    let machine_id = required(request.machine_id.as_deref(), "machine_id")?;
    let Session { license, tenant, machine } =
        state.client.open(Some(&caller), &key, parse_machine(Some(machine_id))?).await?;
    let product_id = product_named(state, &license, product).await?;
    license.check_entitlements(Some(&product_id), &[], &[]).map_err(ApiError::refused)?;
    let activation_request = Activation { machine_name: request.machine_name.as_deref(), app_version: None };
    let call = keyledger_http::dialect::client_call(context, Some(&caller));
    let license = state.client.activate(&call, &license, &machine, activation_request).await?;
    let (token, expires) = state.client.token(&tenant.current, &license.id, &machine, machine_id, Utc::now()).await?;
    Ok(json!({
        "ok": true,
        "token": token,
        "token_expires_at": instant(expires),
        "activation": activation(&license, &machine, machine_id),
        "license": license_summary(&license),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/verify",
    tag = "tenant-jwt",
    operation_id = "tenant_jwt_verify",
    summary = "Verify a license on an activated device: a fresh token",
    request_body = VerifyRequest,
    responses((status = 200, description = "A fresh token", body = Object), (status = "default", description = "{ok: false, error}", body = Object)),
    security(("bearer" = []))
)]
async fn verify(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<VerifyRequest>, ApiError>,
) -> Response {
    keyledger_http::dialect::answer(verify_answer(&state, &context, caller, body).await)
}

async fn verify_answer(
    state: &AppState,
    context: &RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<VerifyRequest>, ApiError>,
) -> Result<Value, ApiError> {
    let caller = tenant_caller(caller)?;
    let JsonBody(request) = body?;
    let machine_id = required(request.machine_id.as_deref(), "machine_id")?;
    let machine = parse_machine(Some(machine_id))?;
    let tenant_id = caller.tenant_id.as_deref().unwrap_or_default();
    // The key and product from a token the tenant signed, else the key sent.
    let from_token = match request.token.as_deref() {
        Some(token) => Some(token_claims(state, tenant_id, token).await?),
        None => None,
    };
    let key = match from_token.as_ref().and_then(|claims| claims["licenseKey"].as_str()) {
        Some(key) => LicenseKey::parse(key).map_err(|e| ApiError::field("token", e.to_string()))?,
        None => parse_key(Some(required(request.license_key.as_deref(), "license_key")?))?,
    };
    let product_id = from_token.as_ref().and_then(|claims| claims["productId"].as_str());
    let Session { license, tenant, machine } = state.client.open(Some(&caller), &key, machine).await?;
    let wants = Wants { product_id, ..Wants::default() };
    let call = keyledger_http::dialect::client_call(context, Some(&caller));
    let checked = state.client.check(&call, &license, &machine, wants, Beat::Validate).await?;
    let checked = checked.map_err(ApiError::refused)?;
    let (token, expires) = state.client.token(&tenant.current, &license.id, &machine, machine_id, Utc::now()).await?;
    Ok(json!({
        "ok": true,
        "valid": true,
        "token": token,
        "token_expires_at": instant(expires),
        "license": license_summary(&checked.license),
    }))
}

/// The claims of a token signed by one of the tenant's published keys
/// (unretired, or retired within the grace).
async fn token_claims(state: &AppState, tenant_id: &str, token: &str) -> Result<Value, ApiError> {
    let keys = state.directory.tenant(tenant_id).await.map_err(ApiError::internal)?;
    let verifying: Vec<keyledger_app::signing::PublicKey> =
        keys.iter().flat_map(|keys| keys.verifying().cloned()).collect();
    jws::verify_jwt(token, &verifying)
        .ok_or_else(|| ApiError::field("token", "token is not a license token signed by this tenant"))
}

#[utoipa::path(
    post,
    path = "/v1/deactivate",
    tag = "tenant-jwt",
    operation_id = "tenant_jwt_deactivate",
    summary = "Deactivate a license on a device, freeing its seat",
    request_body = MachineRequest,
    responses((status = 200, description = "Deactivated", body = Object), (status = "default", description = "{ok: false, error}", body = Object)),
    security(("bearer" = []))
)]
async fn deactivate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<MachineRequest>, ApiError>,
) -> Response {
    keyledger_http::dialect::answer(deactivate_answer(&state, &context, caller, body).await)
}

async fn deactivate_answer(
    state: &AppState,
    context: &RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<MachineRequest>, ApiError>,
) -> Result<Value, ApiError> {
    let caller = tenant_caller(caller)?;
    let (license, machine, _) = machine_call(state, &caller, body).await?;
    let call = keyledger_http::dialect::client_call(context, Some(&caller));
    let license = state.client.deactivate(&call, &license, &machine).await?;
    Ok(json!({
        "ok": true,
        "license": license_summary(&license),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/heartbeat",
    tag = "tenant-jwt",
    operation_id = "tenant_jwt_heartbeat",
    summary = "Touch the activation's last_seen_at",
    request_body = MachineRequest,
    responses((status = 200, description = "Seen", body = Object), (status = "default", description = "{ok: false, error}", body = Object)),
    security(("bearer" = []))
)]
async fn heartbeat(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<MachineRequest>, ApiError>,
) -> Response {
    keyledger_http::dialect::answer(heartbeat_answer(&state, &context, caller, body).await)
}

async fn heartbeat_answer(
    state: &AppState,
    context: &RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<MachineRequest>, ApiError>,
) -> Result<Value, ApiError> {
    let caller = tenant_caller(caller)?;
    let (license, machine, machine_id) = machine_call(state, &caller, body).await?;
    let call = keyledger_http::dialect::client_call(context, Some(&caller));
    let checked = state.client.check(&call, &license, &machine, Wants::default(), Beat::Heartbeat).await?;
    let checked = checked.map_err(ApiError::refused)?;
    Ok(json!({
        "ok": true,
        "activation": activation(&checked.license, &machine, &machine_id),
    }))
}

/// The license and machine of a deactivate or heartbeat.
async fn machine_call(
    state: &AppState,
    caller: &Caller,
    body: Result<JsonBody<MachineRequest>, ApiError>,
) -> Result<(std::sync::Arc<License>, Machine, String), ApiError> {
    let JsonBody(request) = body?;
    let key = parse_key(Some(required(request.license_key.as_deref(), "license_key")?))?;
    let machine_id = required(request.machine_id.as_deref(), "machine_id")?.to_owned();
    let Session { license, machine, .. } =
        state.client.open(Some(caller), &key, parse_machine(Some(&machine_id))?).await?;
    Ok((license, machine, machine_id))
}
