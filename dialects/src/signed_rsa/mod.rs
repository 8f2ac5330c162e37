//! Seed 001's dialect: `POST /license/activate`, `/license/validate` and
//! `/license/deactivate` with `license_key` (five groups of five) and
//! `machine_id` (a SHA-256 in hex). A success is `{"data": {...},
//! "signature": "<base64>"}`, the signature RSA-SHA256 (PKCS#1 v1.5) by
//! the license's tenant's RSA key over `data` JSON-encoded with its keys
//! sorted and no spaces: exactly what Python's `json.dumps(data,
//! sort_keys=True, separators=(",", ":"))` gives, so a client rebuilds
//! the signed bytes from the answer it parsed.
//!
//! Where the document is silent (README, "Seed 001"): the error body
//! (`{"error": {"code", "message", "details"}}`); `GET
//! /license/public-key` hands out the PEM (by the caller's key's tenant,
//! or `?tenant_id=`); deactivate's success is signed too; callers are
//! anonymous as in seed 000, or present a client key.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use keyledger_domain::{KeyFormat, License, LicenseError, LicenseKey, LicenseStatus, MachineId};
use serde::Deserialize;
use serde_json::{json, Value};

use keyledger_app::client::{self as client, Activation, Beat, Session, Wants};
use keyledger_http::auth::ClientCaller;
use keyledger_http::error::{ApiError, ErrorParts};
use keyledger_http::extract::{JsonBody, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

const MAX_NONCE_LEN: usize = 128;

/// The API style with RSA-signed answers (seed 001).
pub struct SignedRsa;

impl keyledger_http::Dialect for SignedRsa {
    fn name(&self) -> &'static str {
        // Recorded in every event this dialect causes: kept as it was.
        "seed001"
    }

    fn owns(&self, path: &str) -> bool {
        path.starts_with("/license/")
    }

    fn routes(&self) -> Routes {
        routes()
    }

    fn is_client_route(&self, route: &str) -> bool {
        route != "/license/public-key"
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
    Routes::new().add(routes!(activate)).add(routes!(validate)).add(routes!(deactivate)).add(routes!(public_key))
}

/// An error in seed 001's shape, with the document's statuses: bad input
/// is 422 with the field's message under `details`.
fn error_body(status: StatusCode, error: &ErrorParts) -> (StatusCode, Value) {
    let status = keyledger_http::dialect::refusal_status(error.code).unwrap_or(
        if error.field.is_some() || status == StatusCode::BAD_REQUEST {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            status
        },
    );
    let mut body = json!({ "error": { "code": error.code, "message": error.message } });
    if let Some(field) = &error.field {
        body["error"]["code"] = json!("validation_error");
        body["error"]["details"] = json!({ keyledger_http::dialect::snake_field(field): [error.message] });
    } else if status == StatusCode::UNPROCESSABLE_ENTITY {
        // The document promises field-level details with every 422; a
        // body that isn't a JSON object has no field to name but itself.
        body["error"]["details"] = json!({ "body": [error.message] });
    }
    (status, body)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LicenseRequest {
    /// `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`, any case.
    pub license_key: Option<String>,
    /// The SHA-256 of the machine's identifier: 64 hex characters.
    pub machine_id: Option<String>,
    /// Optional: echoed inside the signed data, so a recorded answer can't
    /// be replayed.
    pub nonce: Option<String>,
}

/// A request that passed seed 001's checks.
struct Parsed {
    key: LicenseKey,
    machine: MachineId,
    machine_id: String,
    nonce: Option<String>,
}

/// Every field's problems at once, as the document's 422.
#[allow(clippy::result_large_err)] // a refusal is answered at once, never carried
fn parse(request: &LicenseRequest) -> Result<Parsed, Response> {
    let mut details: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // A key of the document's form that keyledger could never have issued
    // (its alphabet leaves out 0, 1, I and O) is unknown, not malformed.
    let mut unknown = false;
    let key = match request.license_key.as_deref().map(str::trim) {
        None | Some("") => {
            details.entry("license_key").or_default().push("license_key is required".into());
            None
        }
        Some(raw) => match LicenseKey::parse(raw) {
            Ok(key) if key.format() == KeyFormat::FiveByFive => Some(key),
            _ if of_the_documents_form(raw) => {
                unknown = true;
                None
            }
            _ => {
                let message = "license_key must be five groups of five letters or digits, joined by hyphens: \
                               XXXXX-XXXXX-XXXXX-XXXXX-XXXXX";
                details.entry("license_key").or_default().push(message.into());
                None
            }
        },
    };
    let machine_id = request.machine_id.as_deref().map(str::trim).unwrap_or_default();
    // Hashed as sent, as every dialect does, so one identifier is one
    // device whichever dialect it comes through.
    let machine = if machine_id.len() == 64 && machine_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        MachineId::parse(machine_id).ok()
    } else {
        let message = if machine_id.is_empty() {
            "machine_id is required"
        } else {
            "machine_id must be the SHA-256 of the machine's identifier: 64 hex characters"
        };
        details.entry("machine_id").or_default().push(message.into());
        None
    };
    if let Some(nonce) = &request.nonce {
        if nonce.chars().count() > MAX_NONCE_LEN || nonce.chars().any(char::is_control) {
            let message = format!("nonce must be at most {MAX_NONCE_LEN} characters without control characters");
            details.entry("nonce").or_default().push(message);
        }
    }
    match (key, machine) {
        (Some(key), Some(machine)) if details.is_empty() => {
            Ok(Parsed { key, machine, machine_id: machine_id.to_ascii_lowercase(), nonce: request.nonce.clone() })
        }
        _ if unknown && details.is_empty() => {
            Err(keyledger_http::dialect::refusal(ApiError::refused(LicenseError::NotFound)))
        }
        _ => {
            let guessed = details.contains_key("license_key");
            let body = json!({ "error": {
                "code": "validation_error",
                "message": "The request's fields are not valid",
                "details": details,
            }});
            let mut response = (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            if guessed {
                // A malformed key is what a guesser sends (address blocks).
                response.extensions_mut().insert(keyledger_http::dialect::FailedGuess);
            }
            Err(response)
        }
    }
}

/// Five groups of five ASCII letters or digits, joined by hyphens: the
/// document's key.
fn of_the_documents_form(raw: &str) -> bool {
    let groups: Vec<&str> = raw.split('-').collect();
    groups.len() == 5 && groups.iter().all(|group| group.len() == 5 && group.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Seed 001's status names.
fn status_name(status: LicenseStatus) -> &'static str {
    match status {
        LicenseStatus::Generated | LicenseStatus::Activated => "active",
        LicenseStatus::Suspended => "suspended",
        LicenseStatus::Expired => "expired",
        LicenseStatus::Revoked => "revoked",
    }
}

/// The signed data of an answer about `license` for the parsed request.
async fn data(state: &AppState, license: &License, parsed: &Parsed) -> Result<Value, ApiError> {
    let now = Utc::now();
    let product = state.client.product_of(license).await?;
    let features = client::features(license, product.as_deref());
    let mut data = json!({
        "license_key": parsed.key.as_str(),
        "license_id": license.id,
        "machine_id": parsed.machine_id,
        "status": status_name(license.status_at(now)),
        "expires_at": license.expires_at.map(instant),
        "activations": license.devices.len(),
        "max_activations": license.max_activations.get(),
        "product": product.as_ref().map(|p| json!({ "id": p.id, "name": p.name, "code": p.code })),
        "features": features,
        "issued_at": instant(now),
    });
    if let Some(nonce) = &parsed.nonce {
        data["nonce"] = json!(nonce);
    }
    Ok(data)
}

/// `{"data", "signature"}`, signed by the license's tenant's RSA key.
async fn signed(state: &AppState, tenant_id: &str, data: Value) -> Result<Response, ApiError> {
    let signer = state.rsa_keys.for_tenant(tenant_id).await.map_err(ApiError::internal)?;
    let bytes = python_json(&data);
    let signature = STANDARD.encode(signer.sign(bytes.as_bytes()));
    Ok((StatusCode::OK, Json(json!({ "data": data, "signature": signature, "kid": signer.kid }))).into_response())
}

/// `value` as Python's `json.dumps(value, sort_keys=True,
/// separators=(",", ":"))` writes it: keys sorted at every level, no
/// spaces, every character outside printable ASCII escaped as `\uXXXX`
/// (UTF-16, lower-case hex). Numbers here are integers only.
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_python_json(value, &mut out);
    out
}

fn write_python_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_python_string(key, out);
                out.push(':');
                write_python_json(&fields[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_python_string(text, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The handlers' common start: the body parsed and checked, and the
/// license the caller may use.
async fn begin(
    state: &AppState,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Result<(Parsed, Option<keyledger_http::auth::Caller>, Session), Response> {
    let JsonBody(request) = body.map_err(keyledger_http::dialect::refusal)?;
    let parsed = parse(&request)?;
    let ClientCaller(caller) = caller.map_err(keyledger_http::dialect::refusal)?;
    let session = state
        .client
        .open(caller.as_ref(), &parsed.key, parsed.machine.clone())
        .await
        .map_err(|e| keyledger_http::dialect::refusal(e.into()))?;
    Ok((parsed, caller, session))
}

fn finish(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(keyledger_http::dialect::refusal)
}

#[utoipa::path(
    post,
    path = "/license/activate",
    tag = "signed-rsa",
    operation_id = "signed_rsa_activate",
    summary = "Activate a license on a machine (RSA-signed answer)",
    request_body = LicenseRequest,
    responses((status = 200, description = "{data, signature}", body = Object), (status = "default", description = "{error: {code, message, details?}}", body = Object)),
    security((), ("bearer" = []))
)]
async fn activate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Response {
    let (parsed, caller, Session { license, machine, .. }) = match begin(&state, caller, body).await {
        Ok(begun) => begun,
        Err(response) => return response,
    };
    finish(
        async {
            let call = keyledger_http::dialect::client_call(&context, caller.as_ref());
            let license = state.client.activate(&call, &license, &machine, Activation::default()).await?;
            signed(&state, &license.tenant_id, data(&state, &license, &parsed).await?).await
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/license/validate",
    tag = "signed-rsa",
    operation_id = "signed_rsa_validate",
    summary = "Validate a license on an activated machine (RSA-signed answer)",
    request_body = LicenseRequest,
    responses((status = 200, description = "{data, signature}", body = Object), (status = "default", description = "{error: {code, message, details?}}", body = Object)),
    security((), ("bearer" = []))
)]
async fn validate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Response {
    let (parsed, caller, Session { license, machine, .. }) = match begin(&state, caller, body).await {
        Ok(begun) => begun,
        Err(response) => return response,
    };
    finish(
        async {
            let call = keyledger_http::dialect::client_call(&context, caller.as_ref());
            let checked = state
                .client
                .check(&call, &license, &machine, Wants::default(), Beat::Validate)
                .await?
                .map_err(ApiError::refused)?;
            signed(&state, &checked.license.tenant_id, data(&state, &checked.license, &parsed).await?).await
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/license/deactivate",
    tag = "signed-rsa",
    operation_id = "signed_rsa_deactivate",
    summary = "Deactivate a license on a machine (RSA-signed answer)",
    request_body = LicenseRequest,
    responses((status = 200, description = "{data, signature}", body = Object), (status = "default", description = "{error: {code, message, details?}}", body = Object)),
    security((), ("bearer" = []))
)]
async fn deactivate(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Result<ClientCaller, ApiError>,
    body: Result<JsonBody<LicenseRequest>, ApiError>,
) -> Response {
    let (parsed, caller, Session { license, machine, .. }) = match begin(&state, caller, body).await {
        Ok(begun) => begun,
        Err(response) => return response,
    };
    finish(
        async {
            let call = keyledger_http::dialect::client_call(&context, caller.as_ref());
            let license = state.client.deactivate(&call, &license, &machine).await?;
            let mut data = data(&state, &license, &parsed).await?;
            data["deactivated"] = json!(true);
            signed(&state, &license.tenant_id, data).await
        }
        .await,
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PublicKeyQuery {
    /// The tenant whose key is wanted, when no key is presented.
    pub tenant_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/license/public-key",
    tag = "signed-rsa",
    operation_id = "signed_rsa_public_key",
    summary = "A tenant's RSA public key (PEM), to check answers' signatures",
    params(PublicKeyQuery),
    responses((status = 200, description = "{tenant_id, kid, algorithm, public_key}", body = Object), (status = "default", description = "{error: {code, message, details?}}", body = Object)),
    security((), ("bearer" = []))
)]
async fn public_key(
    State(state): State<AppState>,
    caller: Result<ClientCaller, ApiError>,
    query: Result<Query<PublicKeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    finish(
        async {
            let ClientCaller(caller) = caller?;
            let Query(query) = query.map_err(|e| ApiError::field("tenantId", e.body_text()))?;
            let tenant_id = match (caller.and_then(|c| c.tenant_id), query.tenant_id) {
                (Some(tenant), _) => tenant,
                (None, Some(tenant)) => tenant,
                (None, None) => {
                    return Err(ApiError::field("tenantId", "tenant_id is required without a tenant's key"))
                }
            };
            // Only tenants that exist get a key made.
            if state.directory.tenant(&tenant_id).await.map_err(ApiError::internal)?.is_none() {
                return Err(ApiError::not_found("No such tenant").with_code("tenant_not_found"));
            }
            let signer = state.rsa_keys.for_tenant(&tenant_id).await.map_err(ApiError::internal)?;
            let body = json!({
                "tenant_id": tenant_id,
                "kid": signer.kid,
                "algorithm": "RSA-SHA256 (PKCS#1 v1.5)",
                "public_key": signer.public_pem,
            });
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_written_as_pythons_json_dumps_writes_it() {
        let data = json!({"b": 1, "a": {"z": null, "y": [true, "x"]}, "é": "naïve \"quoted\" ☃ 😀\n\u{7f}"});
        // json.dumps(data, sort_keys=True, separators=(",", ":"))
        assert_eq!(
            python_json(&data),
            r#"{"a":{"y":[true,"x"],"z":null},"b":1,"\u00e9":"na\u00efve \"quoted\" \u2603 \ud83d\ude00\n\u007f"}"#
        );
    }
}
