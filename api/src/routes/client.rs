//! The client endpoints, which a vendor's software calls: activate,
//! validate, heartbeat, deactivate, and a fresh offline license token.
//!
//! Every answer, refusals included, is signed: the body's exact bytes with
//! Ed25519, in the `Keyledger-Signature` header, by the key of the tenant
//! the license belongs to (or that the client key names), or by the
//! platform key when no tenant can be named. The body repeats the
//! request's `nonce`, `licenseKey` and `machineId` and says when it was
//! issued, so a recorded answer can't be replayed for another request.
//!
//! Callers are anonymous (seed 000) or present a key, usually a tenant's
//! publishable client key, which confines the call to that tenant's
//! licenses: another tenant's license is answered exactly as an unknown
//! key. A tenant may require a key (`requireClientKey`); then an anonymous
//! call on its licenses is answered as an unknown key too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use keyledger_app::anomalies::Allowance;
use keyledger_app::serials::SerialKind;
use keyledger_domain::{
    check_for_update, parse_app_version, AnomalyKind, DeviceDetails, License, LicenseCommand, LicenseError, LicenseKey,
    MachineHash, MachineId, MachineName, Product, Resurrection,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::licenses::{execute_as, parse_key, parse_machine, view_by_key};
use super::Routes;
use crate::auth::{Caller, ClientCaller};
use crate::error::{ApiError, ErrorShape};
use crate::extract::{JsonBody, RequestContext};
use crate::limits::FailedGuess;
use crate::signing::{jws, ActiveKey};
use crate::state::AppState;
use crate::wire::instant;
use keyledger_app::service::CommandError;
use utoipa_axum::routes;

const MAX_NONCE_LEN: usize = 128;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(activate))
        .add(routes!(validate))
        .add(routes!(heartbeat))
        .add(routes!(deactivate))
        .add(routes!(token))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientRequest {
    pub license_key: Option<String>,
    pub machine_id: Option<String>,
    pub machine_name: Option<String>,
    /// The calling application's version: kept on the device at
    /// activation (at most 64 characters); validate and heartbeat answer
    /// whether a newer release of the license's product is out.
    pub app_version: Option<String>,
    /// validate and heartbeat: the product the caller expects the license
    /// to be for (`PRODUCT_MISMATCH` otherwise).
    pub product_id: Option<String>,
    /// validate and heartbeat: feature codes the caller requires, of the
    /// license's own or of its product (`FEATURE_MISSING` otherwise).
    pub features: Option<Vec<String>>,
    pub nonce: Option<String>,
}

/// One client call: who signs its answer, and what the answer repeats.
struct Call {
    signer: Arc<ActiveKey>,
    nonce: Option<String>,
    license_key: Option<String>,
    machine_id: Option<String>,
    issued_at: DateTime<Utc>,
}

impl Call {
    /// Signs `body` (a JSON object) with what it answers for added.
    fn answer(&self, status: StatusCode, mut body: Value) -> Response {
        if let Value::Object(fields) = &mut body {
            fields.insert("nonce".into(), json!(self.nonce));
            fields.insert("licenseKey".into(), json!(self.license_key));
            fields.insert("machineId".into(), json!(self.machine_id));
            fields.insert("issuedAt".into(), json!(instant(self.issued_at)));
        }
        let bytes = serde_json::to_vec(&body).expect("a JSON value serialises");
        let signature = jws::signature_header(&self.signer.kid, &self.signer.key, &bytes);
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(value) = HeaderValue::from_str(&signature) {
            headers.insert(jws::SIGNATURE_HEADER, value);
        }
        response
    }

    fn refuse(&self, error: ApiError) -> Response {
        let guessed = error.code == "license_not_found" || error.field.as_deref() == Some("licenseKey");
        let mut response = self.answer(error.status, client_body(&error));
        if guessed {
            response.extensions_mut().insert(FailedGuess);
        }
        response
    }
}

/// A call whose license was found and may be used by this caller.
struct Found {
    call: Call,
    request: ClientRequest,
    caller: Option<Caller>,
    machine: MachineId,
    license: Arc<License>,
}

/// Parses the call and finds its license, deciding who signs. A refusal
/// comes back with the call, to be answered in the endpoint's own shape.
async fn begin(
    state: &AppState,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Result<Found, (Call, ApiError)> {
    let mut call = Call {
        signer: state.directory.platform().clone(),
        nonce: None,
        license_key: None,
        machine_id: None,
        issued_at: Utc::now(),
    };
    let request = match body {
        Ok(JsonBody(request)) => request,
        Err(error) => return Err((call, error)),
    };
    call.nonce = request.nonce.clone();
    call.license_key = request.license_key.clone();
    call.machine_id = request.machine_id.clone();
    let caller = match caller {
        Ok(ClientCaller(caller)) => caller,
        Err(error) => return Err((call, error)),
    };
    let caller_tenant = caller.as_ref().and_then(|c| c.tenant_id.clone());
    if let Some(tenant) = &caller_tenant {
        match state.directory.tenant(tenant).await {
            Ok(Some(keys)) => call.signer = keys.current.clone(),
            Ok(None) => {}
            Err(error) => return Err((call, ApiError::internal(error))),
        }
    }
    if let Some(nonce) = &request.nonce {
        if nonce.chars().count() > MAX_NONCE_LEN || nonce.chars().any(char::is_control) {
            let message = format!("nonce must be at most {MAX_NONCE_LEN} characters without control characters");
            call.nonce = None;
            return Err((call, ApiError::field("nonce", message)));
        }
    }
    let parsed = parse_key(request.license_key.as_deref())
        .and_then(|key| parse_machine(request.machine_id.as_deref()).map(|machine| (key, machine)));
    let (key, machine) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Err((call, error)),
    };
    let license = match find(state, &key).await {
        Ok(Some(license)) => license,
        Ok(None) => return Err((call, ApiError::refused(LicenseError::NotFound))),
        Err(error) => return Err((call, error)),
    };
    let tenant = match state.directory.tenant(&license.tenant_id).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return Err((call, ApiError::refused(LicenseError::NotFound))),
        Err(error) => return Err((call, ApiError::internal(error))),
    };
    let visible = match (&caller, &caller_tenant) {
        (Some(_), Some(tenant_id)) => *tenant_id == license.tenant_id,
        (Some(_), None) => true, // the operator
        (None, _) => !tenant.require_client_key,
    };
    if !visible {
        // Exactly what an unknown key gets, signed the same way.
        return Err((call, ApiError::refused(LicenseError::NotFound)));
    }
    call.signer = tenant.current.clone();
    Ok(Found { call, request, caller, machine, license })
}

/// The license with this key, from this process's memory when it knows
/// the key (the hot path: no database), else from the read model.
async fn find(state: &AppState, key: &LicenseKey) -> Result<Option<Arc<License>>, ApiError> {
    if let Some(entry) = state.memory.get_by_key(key) {
        return Ok(Some(entry.license));
    }
    // Generated by another process a moment ago, or not at all.
    let Some(view) = view_by_key(state, key).await? else { return Ok(None) };
    state.memory.put(view.license.clone(), view.version, view.last_hash.as_deref());
    Ok(Some(Arc::new(view.license)))
}

/// An offline license token for `machine_id` (as the client sent it),
/// describing the license at its event `version` with chain `hash`.
fn license_token(
    signer: &ActiveKey,
    license: &License,
    version: i64,
    hash: &str,
    machine_id: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    let expires = license.expires_at.map_or(now + ttl, |at| at.min(now + ttl));
    let claims = json!({
        "iss": format!("keyledger:{}", license.tenant_id),
        "sub": license.id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": expires.timestamp(),
        "licenseKey": license.license_key.as_ref().map(ToString::to_string),
        "machine": hex::encode(Sha256::digest(machine_id.as_bytes())),
        "status": license.status_at(now),
        "licenseType": license.license_type,
        "maxActivations": license.max_activations.get(),
        "maxConnections": license.max_connections,
        "expiresAt": license.expires_at.map(instant),
        "sequence": version,
        "hash": hash,
    });
    (jws::jwt(&signer.kid, &signer.key, &claims), expires)
}

/// A token for `found`'s machine from the license's newest state.
async fn token_for(state: &AppState, found: &Found, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), ApiError> {
    let (license, version, hash) = state.licenses.head(&found.license.id).await?;
    let machine_id = found.request.machine_id.as_deref().unwrap_or_default();
    Ok(license_token(&found.call.signer, &license, version, &hash, machine_id, state.token_ttl, now))
}

#[utoipa::path(
    post,
    path = "/activate",
    tag = "client",
    summary = "Activate a machine: take a seat; the answer holds an offline license token",
    request_body = ClientRequest,
    responses((status = 200, description = "Activated (signed)", body = crate::openapi::ActivateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn activate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    let found = match begin(&state, caller, body).await {
        Ok(found) => found,
        Err((call, error)) => return call.refuse(error),
    };
    match activate_found(&state, &context, &found).await {
        Ok(body) => found.call.answer(StatusCode::OK, body),
        Err(error) => found.call.refuse(error),
    }
}

async fn activate_found(state: &AppState, context: &RequestContext, found: &Found) -> Result<Value, ApiError> {
    let machine_name = MachineName::parse(found.request.machine_name.as_deref())
        .map_err(|e| ApiError::field("machineName", e.to_string()))?;
    let app_version = parse_app_version(found.request.app_version.as_deref())
        .map_err(|e| ApiError::field("appVersion", e.to_string()))?;
    let details = device_details(context, app_version);
    let machine = state.hash_machine(&found.machine);
    let now = Utc::now();
    let device_number = new_device_number(state, &found.license, &machine).await?;
    let command =
        LicenseCommand::ActivateLicense { machine: machine.clone(), machine_name, details, device_number, at: now };
    let license = execute_as(state, context, found.caller.as_ref(), &found.license, command).await?;
    let (token, _) = token_for(state, found, now).await?;
    Ok(json!({
        "success": true,
        "error": null,
        "code": VALID,
        // This machine's activation, which on a multi-seat license may be
        // later than the license's first.
        "activatedAt": license.device(&machine).map(|device| instant(device.activated_at)),
        "expiresAt": license.expires_at.map(instant),
        "licenseType": license.license_type,
        "maxConnections": license.max_connections,
        // keyledger has no cloud accounts; kept for seed 000's shape.
        "cloudAccountId": null,
        // The tenant that issued the license.
        "accountId": license.tenant_id,
        "userId": license.owner_id,
        "licenseToken": token,
    }))
}

#[utoipa::path(
    post,
    path = "/deactivate",
    tag = "client",
    summary = "Release this machine's seat",
    request_body = ClientRequest,
    responses((status = 200, description = "Released (signed)", body = crate::openapi::DeactivateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn deactivate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    let found = match begin(&state, caller, body).await {
        Ok(found) => found,
        Err((call, error)) => return call.refuse(error),
    };
    let command = LicenseCommand::DeactivateLicense {
        machine: state.hash_machine(&found.machine),
        enforce_transfer_limit: true,
        at: Utc::now(),
    };
    match execute_as(&state, &context, found.caller.as_ref(), &found.license, command).await {
        Ok(_) => found.call.answer(
            StatusCode::OK,
            json!({
                "success": true,
                "error": null,
                "code": "DEACTIVATED",
                "message": "License has been deactivated on this machine.",
            }),
        ),
        Err(error) => found.call.refuse(error),
    }
}

/// Is this machine still licensed? A refusal is a normal answer
/// (`isValid: false`, HTTP 200); only bad input is a 400. The device's
/// heartbeat is recorded at most once per KEYLEDGER_HEARTBEAT_INTERVAL_SECS.
#[utoipa::path(
    post,
    path = "/validate",
    tag = "client",
    summary = "Is this machine licensed? A refusal is isValid: false",
    request_body = ClientRequest,
    responses((status = 200, description = "The verdict (signed)", body = crate::openapi::ValidateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn validate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    let interval = state.heartbeat_interval;
    check_machine(&state, &context, caller, body, interval).await
}

/// An explicit heartbeat: the same answer as validate, and the device's
/// heartbeat recorded whenever its last one is at least
/// KEYLEDGER_HEARTBEAT_FLOOR_SECS old (a minute by default), for daemons
/// that report liveness more often than the validation interval. The
/// floor keeps a client calling in a loop from flooding the log.
#[utoipa::path(
    post,
    path = "/heartbeat",
    tag = "client",
    summary = "validate's answer, and the machine's heartbeat recorded",
    request_body = ClientRequest,
    responses((status = 200, description = "The verdict (signed)", body = crate::openapi::ValidateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn heartbeat(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    let floor = state.heartbeat_floor;
    check_machine(&state, &context, caller, body, floor).await
}

/// Validate's answer to a license-state refusal: 200 with `isValid: false`.
fn invalid(call: &Call, reason: LicenseError) -> Response {
    let platform_code = ApiError::refused(reason.clone()).code;
    let guessed = reason == LicenseError::NotFound;
    let mut body = json!({
        "isValid": false,
        "error": reason.to_string(),
        "code": client_code(platform_code, StatusCode::BAD_REQUEST),
        "reason": platform_code,
        "expiresAt": null,
        "licenseType": null,
        "maxConnections": null,
    });
    if let LicenseError::FeatureMissing { missing } = &reason {
        body["missingFeatures"] = json!(missing);
    }
    let mut response = call.answer(StatusCode::OK, body);
    if guessed {
        response.extensions_mut().insert(FailedGuess);
    }
    response
}

async fn check_machine(
    state: &AppState,
    context: &RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
    heartbeat_interval: Duration,
) -> Response {
    let found = match begin(state, caller, body).await {
        Ok(found) => found,
        Err((call, error)) if error.code == "license_not_found" => return invalid(&call, LicenseError::NotFound),
        Err((call, error)) => return call.refuse(error.shaped(ErrorShape::Validate)),
    };
    let now = Utc::now();
    let machine = state.hash_machine(&found.machine);
    let license = match confirmed_valid(state, &found.license, &machine, now).await {
        Ok(Ok(license)) => license,
        Ok(Err(LicenseError::HeartbeatDead)) if found.license.policy.resurrection == Resurrection::Revive => {
            match revive(state, context, &found, &machine, now).await {
                Ok(license) => Arc::new(license),
                Err(error) if error.status.is_client_error() => {
                    return found.call.refuse(error.shaped(ErrorShape::Validate).with_status(StatusCode::OK))
                }
                Err(error) => return found.call.refuse(error.shaped(ErrorShape::Validate)),
            }
        }
        Ok(Err(reason)) => return invalid(&found.call, reason),
        Err(error) => return found.call.refuse(error.shaped(ErrorShape::Validate)),
    };
    let product = match product_if_needed(state, &found.request, &license).await {
        Ok(product) => product,
        Err(error) => return found.call.refuse(error.shaped(ErrorShape::Validate)),
    };
    match check_entitlements(&found.request, &license, product.as_deref()) {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return invalid(&found.call, reason),
        Err(error) => return found.call.refuse(error.shaped(ErrorShape::Validate)),
    }
    let update = update_check(&found.request, product.as_deref(), now);
    count_call(state, context, found.caller.as_ref(), &license, &machine, now).await;
    // Often enough under a heartbeat policy that a live device is never
    // taken for dead (see `Policy::dead_after`).
    let heartbeat_interval = license.policy.record_every(heartbeat_interval);
    let heartbeat_due =
        license.device(&machine).is_some_and(|device| now >= device.last_heartbeat_at + heartbeat_interval);
    if heartbeat_due {
        let command = LicenseCommand::RecordHeartbeat { machine, min_interval: heartbeat_interval, at: now };
        // The answer does not depend on it: a failure is logged and the
        // validation stands.
        if let Err(error) = execute_as(state, context, found.caller.as_ref(), &license, command).await {
            tracing::warn!(license_id = %license.id, code = error.code, "heartbeat not recorded");
        }
    }
    let mut body = json!({
        "isValid": true,
        "error": null,
        "code": VALID,
        "expiresAt": license.expires_at.map(instant),
        "licenseType": license.license_type,
        "maxConnections": license.max_connections,
    });
    if let Some(update) = update {
        body["updateAvailable"] = json!(update.update_available);
        body["latestVersion"] = json!(update.latest_version);
        body["mandatoryUpdate"] = json!(update.mandatory);
    }
    found.call.answer(StatusCode::OK, body)
}

/// How stale a product read by validate may be: a change made through
/// another process reaches this one's answers within this.
const PRODUCT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// The license's product, read (from a cache) only when the answer needs
/// it: the caller asks for a feature the license does not carry itself,
/// or reports an `appVersion`.
async fn product_if_needed(
    state: &AppState,
    request: &ClientRequest,
    license: &License,
) -> Result<Option<Arc<Product>>, ApiError> {
    let Some(product_id) = &license.product_id else { return Ok(None) };
    let needs_features =
        request.features.as_deref().is_some_and(|wanted| wanted.iter().any(|f| !license.features.contains(f)));
    if !needs_features && request.app_version.is_none() {
        return Ok(None);
    }
    Ok(state.products.get_cached(product_id, PRODUCT_MAX_AGE).await?)
}

/// The caller's `productId` and required `features` against the license
/// and its product's features.
fn check_entitlements(
    request: &ClientRequest,
    license: &License,
    product: Option<&Product>,
) -> Result<Result<(), LicenseError>, ApiError> {
    let product_id = match request.product_id.as_deref() {
        Some(raw) => Some(super::products::PRODUCT.parse_id(raw, "productId")?),
        None => None,
    };
    let required = match request.features.as_deref() {
        Some(raw) => super::products::checked_features(raw)?,
        None => Vec::new(),
    };
    let product_features = product.map(|product| product.features.as_slice()).unwrap_or_default();
    Ok(license.check_entitlements(product_id.as_deref(), &required, product_features))
}

/// What a caller reporting `appVersion` is told about updates: from its
/// license's product's stable releases out by `now` (a license of the
/// default product has none). An `appVersion` that is not a semantic
/// version can't be compared: `updateAvailable` and `mandatoryUpdate` are
/// null then, and the validation stands.
fn update_check(request: &ClientRequest, product: Option<&Product>, now: DateTime<Utc>) -> Option<UpdateAnswer> {
    let raw = request.app_version.as_deref()?;
    let releases = product.map(|product| product.releases.as_slice()).unwrap_or_default();
    Some(match semver::Version::parse(raw.trim()) {
        Ok(version) => {
            let check = check_for_update(releases, &version, now);
            UpdateAnswer {
                update_available: Some(check.update_available),
                latest_version: check.latest_version,
                mandatory: Some(check.mandatory),
            }
        }
        Err(_) => {
            let latest = check_for_update(releases, &semver::Version::new(0, 0, 0), now).latest_version;
            UpdateAnswer { update_available: None, latest_version: latest, mandatory: None }
        }
    })
}

struct UpdateAnswer {
    update_available: Option<bool>,
    latest_version: Option<String>,
    mandatory: Option<bool>,
}

/// The code of a successful client answer: the machine holds a seat of a
/// license that may be used.
const VALID: &str = "VALID";

/// The client protocol's code for a platform error code: one list for
/// every signed client answer (README, "Client answer codes"). The
/// platform's own code stays in `reason`.
fn client_code(platform_code: &str, status: StatusCode) -> &'static str {
    match platform_code {
        "license_not_found" => "NOT_FOUND",
        "license_not_activated" => "NOT_ACTIVATED",
        "machine_not_activated" => "OTHER_MACHINE",
        "bound_to_another_machine" | "seat_limit_reached" => "TOO_MANY_MACHINES",
        "license_suspended" => "SUSPENDED",
        "license_expired" => "EXPIRED",
        "license_revoked" => "REVOKED",
        "heartbeat_dead" => "HEARTBEAT_DEAD",
        "device_blocked" => "DEVICE_BLOCKED",
        "transfer_limit" => "TRANSFER_LIMIT",
        "product_mismatch" => "PRODUCT_MISMATCH",
        "feature_missing" => "FEATURE_MISSING",
        "unauthorized" | "malformed_authorization" | "forbidden" => "UNAUTHORIZED",
        "contended" => "CONTENDED",
        _ if status.is_client_error() => "INVALID_REQUEST",
        _ => "INTERNAL_ERROR",
    }
}

/// An error's body as a client answer: the client code in `code`, the
/// platform's in `reason`.
fn client_body(error: &ApiError) -> Value {
    let mut body = error.body();
    body["reason"] = json!(error.code);
    body["code"] = json!(client_code(error.code, error.status));
    body
}

/// A dead device's call under a `revive` policy: it is alive again,
/// taking a seat again if the sweep freed its seat (refused when none is
/// free).
async fn revive(
    state: &AppState,
    context: &RequestContext,
    found: &Found,
    machine: &MachineHash,
    now: DateTime<Utc>,
) -> Result<License, ApiError> {
    let details = device_details(context, None);
    let command = LicenseCommand::ReviveDevice { machine: machine.clone(), details, at: now };
    execute_as(state, context, found.caller.as_ref(), &found.license, command).await
}

/// A number for the machine if it is new to the license (as far as this
/// process knows: a number taken for nothing is a gap, and a device that
/// held a seat before keeps its own whatever is passed).
pub(super) async fn new_device_number(
    state: &AppState,
    license: &License,
    machine: &MachineHash,
) -> Result<Option<i64>, ApiError> {
    if license.knows_machine(machine) {
        return Ok(None);
    }
    let number = state.serials.next(&license.tenant_id, SerialKind::Device).await.map_err(ApiError::internal)?;
    Ok(Some(number))
}

/// What a device reports about itself on this request.
fn device_details(context: &RequestContext, app_version: Option<String>) -> DeviceDetails {
    DeviceDetails {
        app_version,
        ip: context.client_ip.clone(),
        user_agent: context.user_agent.as_deref().and_then(DeviceDetails::user_agent),
    }
}

/// Counts a validate or heartbeat call of a device that holds a seat, for
/// the excessive-heartbeats detector (see `keyledger_app::anomalies::calls`).
/// The call that passes the tenant's allowance in a window is reported to
/// the log in the background: the answer never waits for it.
async fn count_call(
    state: &AppState,
    context: &RequestContext,
    caller: Option<&Caller>,
    license: &License,
    machine: &MachineHash,
    now: DateTime<Utc>,
) {
    let settings = match state.anomaly_settings.get(&license.tenant_id).await {
        Ok(settings) => settings,
        Err(error) => {
            tracing::warn!(tenant_id = %license.tenant_id, %error, "anomaly settings unreadable; call not counted");
            return;
        }
    };
    let rule = &settings.excessive_heartbeats;
    if !rule.enabled {
        return;
    }
    let allowance = Allowance {
        allowance: rule.max_calls_per_window,
        window_secs: rule.window_secs,
        sustained: rule.sustained_windows,
    };
    let Some(over) = state.call_counter.count(&license.id, machine, allowance, now) else {
        return;
    };
    if license.open_anomalies.iter().any(|open| open.kind == AnomalyKind::ExcessiveHeartbeats) {
        // The episode is already recorded; the run counts on, and is
        // reported again at its next multiple once the anomaly is resolved.
        return;
    }
    let command = LicenseCommand::ReportCallRate {
        machine: machine.clone(),
        calls: over.calls,
        allowance: rule.max_calls_per_window,
        window_started_at: over.window_started_at,
        window_secs: rule.window_secs,
        windows: over.windows,
        at: now,
    };
    let metadata = crate::metadata::event_metadata(context, caller, &license.tenant_id, now);
    let (licenses, license_id) = (state.licenses.clone(), license.id.clone());
    tokio::spawn(async move {
        if let Err(error) = licenses.execute(&license_id, command, metadata).await {
            tracing::warn!(%license_id, %error, "a call rate over the allowance was not reported");
        }
    });
}

/// Whether `machine` holds a seat of the license now. A refusal from
/// memory is confirmed on the log before a paying customer hears it, in
/// case this process has not seen a write made elsewhere; the read model
/// is mended then too.
async fn confirmed_valid(
    state: &AppState,
    license: &Arc<License>,
    machine: &MachineHash,
    now: DateTime<Utc>,
) -> Result<Result<Arc<License>, LicenseError>, ApiError> {
    if license.validate(machine, now).is_ok() {
        return Ok(Ok(license.clone()));
    }
    let (current, version, last_hash) = state.licenses.load(&license.id).await.map_err(ApiError::from)?;
    if let Err(reason) = current.validate(machine, now) {
        return Ok(Err(reason));
    }
    tracing::debug!(license_id = %license.id, "validation view was behind the log");
    state.licenses.mend_view(&current, version, &last_hash).await.map_err(|e: CommandError| ApiError::from(e))?;
    Ok(Ok(Arc::new(current)))
}

/// `POST …/token`: a fresh offline license token for a machine that holds
/// a seat; refused, as a 400, when validate would refuse the machine.
#[utoipa::path(
    post,
    path = "/token",
    tag = "client",
    summary = "A fresh offline license token for a machine that holds a seat",
    request_body = ClientRequest,
    responses((status = 200, description = "The token (signed)", body = crate::openapi::TokenAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::openapi::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn token(
    State(state): State<AppState>,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    let found = match begin(&state, caller, body).await {
        Ok(found) => found,
        Err((call, error)) => return call.refuse(error),
    };
    let now = Utc::now();
    let machine = state.hash_machine(&found.machine);
    match confirmed_valid(&state, &found.license, &machine, now).await {
        Ok(Ok(_)) => {}
        Ok(Err(reason)) => return found.call.refuse(ApiError::refused(reason)),
        Err(error) => return found.call.refuse(error),
    }
    match token_for(&state, &found, now).await {
        Ok((token, expires)) => found.call.answer(
            StatusCode::OK,
            json!({
                "success": true,
                "error": null,
                "code": VALID,
                "licenseToken": token,
                "tokenExpiresAt": instant(expires),
            }),
        ),
        Err(error) => found.call.refuse(error),
    }
}
