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
use chrono::{DateTime, Utc};
use keyledger_domain::{License, LicenseError};
use serde::Deserialize;
use serde_json::{json, Value};

use keyledger_app::client::{parse_key, parse_machine, Activation, Beat, Machine, Wants};

use keyledger_app::signing::{jws, ActiveKey, Directory};
use keyledger_http::auth::{Caller, ClientCaller};
use keyledger_http::dialect::client_call;
use keyledger_http::dialect::FailedGuess;
use keyledger_http::error::{ApiError, ErrorParts, ErrorShape};
use keyledger_http::extract::{JsonBody, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
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
#[serde(deny_unknown_fields)]
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
        self.signed(status, serde_json::to_vec(&body).expect("a JSON value serialises"))
    }

    /// Answers `bytes`, a JSON body already carrying what the call
    /// answers for, with their signature.
    fn signed(&self, status: StatusCode, bytes: Vec<u8>) -> Response {
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
        let mut response = self.answer(error.status, client_body(&error));
        if keyledger_http::dialect::is_failed_guess(&error) {
            response.extensions_mut().insert(FailedGuess);
        }
        response
    }
}

/// The shape a native client endpoint answers its refusals in, if `path`
/// is one (under either prefix): validate's and heartbeat's carry
/// `isValid`, the others `success`.
pub(crate) fn refusal_shape(path: &str) -> Option<ErrorShape> {
    let call = path.strip_prefix("/api/v1/licenses/").or_else(|| path.strip_prefix("/api/v1/fastrLicense/"))?;
    match call {
        "validate" | "heartbeat" => Some(ErrorShape::Validate),
        "activate" | "deactivate" | "token" => Some(ErrorShape::Success),
        _ => None,
    }
}

/// An error met before a client endpoint's handler ran (the request
/// screen, the rate limits, an unreadable body), answered as the endpoint
/// answers its own refusals: in its shape and signed, by the platform key
/// since no tenant can be named yet. A client written from seed 000 reads
/// `isValid` from every validate answer.
pub(crate) fn early_refusal(
    directory: &Directory,
    shape: ErrorShape,
    status: StatusCode,
    parts: &ErrorParts,
) -> Response {
    let call = Call {
        signer: directory.platform().clone(),
        nonce: None,
        license_key: None,
        machine_id: None,
        issued_at: Utc::now(),
    };
    let error =
        ApiError { status, code: parts.code, message: parts.message.clone(), field: parts.field.clone(), shape };
    call.answer(status, client_body(&error))
}

/// A call whose license was found and may be used by this caller.
struct Found {
    call: Call,
    request: ClientRequest,
    caller: Option<Caller>,
    machine: Machine,
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
    match state.client.signer_for(caller.as_ref()).await {
        Ok(signer) => call.signer = signer,
        Err(error) => return Err((call, error.into())),
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
        Err(error) => return Err((call, error.into())),
    };
    let session = match state.client.open(caller.as_ref(), &key, machine).await {
        Ok(session) => session,
        Err(error) => return Err((call, error.into())),
    };
    call.signer = session.tenant.current.clone();
    Ok(Found { call, request, caller, machine: session.machine, license: session.license })
}

impl Found {
    fn wants(&self) -> Wants<'_> {
        Wants {
            product_id: self.request.product_id.as_deref(),
            features: self.request.features.as_deref(),
            app_version: self.request.app_version.as_deref(),
        }
    }

    fn machine_id(&self) -> &str {
        self.request.machine_id.as_deref().unwrap_or_default()
    }
}

#[utoipa::path(
    post,
    path = "/activate",
    tag = "client",
    summary = "Activate a machine: take a seat; the answer holds an offline license token",
    request_body = ClientRequest,
    responses((status = 200, description = "Activated (signed)", body = crate::native::schemas::ActivateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
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
    let activation = Activation {
        machine_name: found.request.machine_name.as_deref(),
        app_version: found.request.app_version.as_deref(),
    };
    let call = client_call(context, found.caller.as_ref());
    let license = state.client.activate(&call, &found.license, &found.machine, activation).await?;
    let device = license.device(&found.machine.hash);
    let (token, _) =
        state.client.token(&found.call.signer, &license.id, &found.machine, found.machine_id(), Utc::now()).await?;
    Ok(json!({
        "success": true,
        "error": null,
        "code": VALID,
        // This machine's activation, which on a multi-seat license may be
        // later than the license's first.
        "activatedAt": device.map(|device| instant(device.activated_at)),
        "expiresAt": license.expires_at.map(instant),
        "licenseType": license.license_type,
        "maxConnections": license.max_connections,
        // Seed 000 makes (or links) a record for the activated server:
        // here, the machine's device record, whose id is stable across
        // its re-activations (`GET …/{licenseId}/devices` lists it).
        "cloudAccountId": device.map(|device| device.id(&license.id)),
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
    responses((status = 200, description = "Released (signed)", body = crate::native::schemas::DeactivateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
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
    let call = client_call(&context, found.caller.as_ref());
    match state.client.deactivate(&call, &found.license, &found.machine).await {
        Ok(_) => found.call.answer(
            StatusCode::OK,
            json!({
                "success": true,
                "error": null,
                "code": "DEACTIVATED",
                "message": "License has been deactivated on this machine.",
            }),
        ),
        Err(error) => found.call.refuse(error.into()),
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
    responses((status = 200, description = "The verdict (signed)", body = crate::native::schemas::ValidateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn validate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    check_machine(&state, &context, caller, body, Beat::Validate).await
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
    responses((status = 200, description = "The verdict (signed)", body = crate::native::schemas::ValidateAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security((), ("bearer" = []), ("apiKey" = []))
)]
async fn heartbeat(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<ClientRequest>, ApiError>,
) -> Response {
    check_machine(&state, &context, caller, body, Beat::Heartbeat).await
}

/// Validate's answer to a license-state refusal: 200 with `isValid: false`,
/// and the license's expiry, type and connections when the caller may
/// see the license (an expired one says when it expired).
fn invalid(call: &Call, reason: LicenseError, license: Option<&License>) -> Response {
    let platform_code = ApiError::refused(reason.clone()).code;
    let guessed = reason == LicenseError::NotFound;
    let mut body = json!({
        "isValid": false,
        "error": reason.to_string(),
        "code": client_code(platform_code, StatusCode::BAD_REQUEST),
        "reason": platform_code,
        "expiresAt": license.and_then(|l| l.expires_at).map(instant),
        "licenseType": license.map(|l| l.license_type),
        "maxConnections": license.and_then(|l| l.max_connections),
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
    beat: Beat,
) -> Response {
    let found = match begin(state, caller, body).await {
        Ok(found) => found,
        Err((call, error)) if error.code == "license_not_found" => return invalid(&call, LicenseError::NotFound, None),
        Err((call, error)) => return call.refuse(error.shaped(ErrorShape::Validate)),
    };
    let call = client_call(context, found.caller.as_ref());
    let checked = state.client.check(&call, &found.license, &found.machine, found.wants(), beat);
    let (license, update) = match checked.await {
        Ok(Ok(checked)) => (checked.license, checked.update),
        Ok(Err(reason)) => return invalid(&found.call, reason, Some(&found.license)),
        Err(error) => return found.call.refuse(ApiError::from(error).shaped(ErrorShape::Validate)),
    };
    let call = &found.call;
    let body = Valid {
        code: VALID,
        error: None,
        expires_at: license.expires_at.map(instant),
        is_valid: true,
        issued_at: instant(call.issued_at),
        latest_version: update.as_ref().map(|u| u.latest_version.clone()),
        license_key: call.license_key.as_deref(),
        license_type: license.license_type,
        machine_id: call.machine_id.as_deref(),
        mandatory_update: update.as_ref().map(|u| u.mandatory),
        max_connections: license.max_connections,
        nonce: call.nonce.as_deref(),
        update_available: update.as_ref().map(|u| u.update_available),
    };
    call.signed(StatusCode::OK, serde_json::to_vec(&body).expect("a validation answer serialises"))
}

/// validate's and heartbeat's answer to a licensed machine, the answer
/// the busiest endpoints give most: serialised straight from its fields,
/// which are declared in sorted order so the bytes are those of the same
/// answer built as a JSON map (whose keys sort), like every other answer.
/// The update fields are there only when the caller sent `appVersion`.
#[derive(Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Valid<'a> {
    code: &'static str,
    error: Option<&'static str>,
    expires_at: Option<String>,
    is_valid: bool,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_version: Option<Option<String>>,
    license_key: Option<&'a str>,
    license_type: keyledger_domain::LicenseType,
    machine_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mandatory_update: Option<Option<bool>>,
    max_connections: Option<u32>,
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_available: Option<Option<bool>>,
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
        "rate_limited" | "blocked" => "RATE_LIMITED",
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

/// `POST …/token`: a fresh offline license token for a machine that holds
/// a seat; refused, as a 400, when validate would refuse the machine.
#[utoipa::path(
    post,
    path = "/token",
    tag = "client",
    summary = "A fresh offline license token for a machine that holds a seat",
    request_body = ClientRequest,
    responses((status = 200, description = "The token (signed)", body = crate::native::schemas::TokenAnswer, headers(("Keyledger-Signature" = String, description = "keyid, algorithm and Ed25519 signature of the body"))), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
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
    match state.client.confirmed_valid(&found.license, &found.machine.hash, now).await {
        Ok(Ok(_)) => {}
        Ok(Err(reason)) => return found.call.refuse(ApiError::refused(reason)),
        Err(error) => return found.call.refuse(error.into()),
    }
    match state.client.token(&found.call.signer, &found.license.id, &found.machine, found.machine_id(), now).await {
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
        Err(error) => found.call.refuse(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed answer's bytes are those of the same answer as a JSON
    /// map, with and without the update fields: its keys are in sorted
    /// order and none is missing or added.
    #[test]
    fn a_valid_answer_serialises_as_its_sorted_map_would() {
        let with_update = Valid {
            code: VALID,
            error: None,
            expires_at: Some("2027-01-01T00:00:00Z".into()),
            is_valid: true,
            issued_at: "2026-11-28T00:00:00Z".into(),
            latest_version: Some(Some("2.0.0".into())),
            license_key: Some("KEY"),
            license_type: keyledger_domain::LicenseType::default(),
            machine_id: Some("m1"),
            mandatory_update: Some(None),
            max_connections: Some(3),
            nonce: None,
            update_available: Some(Some(true)),
        };
        let without_update =
            Valid { latest_version: None, mandatory_update: None, update_available: None, ..with_update.clone() };
        for answer in [&with_update, &without_update] {
            let typed = serde_json::to_vec(answer).unwrap();
            let as_map = serde_json::to_vec(&serde_json::to_value(answer).unwrap()).unwrap();
            assert_eq!(String::from_utf8(typed).unwrap(), String::from_utf8(as_map).unwrap());
        }
        let bare = serde_json::to_value(&without_update).unwrap();
        assert!(bare.get("updateAvailable").is_none() && bare.get("latestVersion").is_none());
        assert_eq!(bare["error"], Value::Null);
    }
}
