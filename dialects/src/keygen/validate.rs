//! Validation as Keygen answers it (always 200, `meta.valid` and
//! `meta.code`, `data` the license whenever the key exists), who is
//! calling (`/me`), a license and its entitlements, and the service ping.
//!
//! Keygen's codes, in the order they are decided here (docs/dialects/
//! keygen.md has the table with keyledger's refusals beside them):
//! `NOT_FOUND`; `BANNED` (a revoked license), `SUSPENDED`, `EXPIRED`;
//! `PRODUCT_SCOPE_MISMATCH`; with a fingerprint scope (every fingerprint
//! named must pass) `NO_MACHINE` / `NO_MACHINES` (no machine at all),
//! `HEARTBEAT_NOT_STARTED` (a heartbeat policy and no heartbeat yet),
//! `BANNED` (a blocked machine), `HEARTBEAT_DEAD` (freed when its
//! heartbeats stopped), `FINGERPRINT_SCOPE_MISMATCH` (not one of the
//! license's machines); `ENTITLEMENTS_MISSING`; else `VALID`. Without a fingerprint scope a
//! usable license is valid (keyledger's policies have no "fingerprint
//! scope required" setting).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keyledger_app::client::{Beat, Visible, Wants};
use keyledger_domain::{License, LicenseError, LicenseKey, MachineId};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::{account, answer, bad_field, document, document_bytes, license_by_id, licensed, resources, Credential};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParam, PathParams, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(routes!(ping))
        .add(routes!(validate_key))
        .add(routes!(validate_by_id))
        .add(routes!(me))
        .add(routes!(show_license))
        .add(routes!(entitlements))
}

/// The scopes a validation may name.
const SCOPES: [&str; 4] = ["fingerprint", "fingerprints", "product", "entitlements"];

/// The most fingerprints one validation may name.
const MAX_FINGERPRINTS: usize = 100;
/// The most entitlements one validation may ask for.
const MAX_ENTITLEMENTS: usize = 100;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(super) struct ValidationRequest {
    #[schema(value_type = Object)]
    meta: Option<Value>,
}

/// `meta.scope` as a client sent it (echoed back), and what it asks.
#[derive(Debug, Default)]
struct Scope {
    echo: Value,
    fingerprints: Vec<String>,
    /// Whether it named several (`fingerprints`) rather than one.
    several: bool,
    product: Option<String>,
    entitlements: Vec<String>,
}

fn strings(value: &Value, pointer: &str, max: usize) -> Result<Vec<String>, ApiError> {
    let items = value.as_array().ok_or_else(|| bad_field(pointer, format!("{pointer} must be an array of strings")))?;
    if items.len() > max {
        return Err(bad_field(pointer, format!("{pointer} may name at most {max}")));
    }
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad_field(pointer, format!("{pointer} must be an array of strings")))
        })
        .collect()
}

fn text(value: &Value, pointer: &str) -> Result<String, ApiError> {
    value.as_str().map(str::to_owned).ok_or_else(|| bad_field(pointer, format!("{pointer} must be a string")))
}

/// `meta` of a validation: its scope, nonce and (for validate-key) key.
fn read_meta(meta: Option<&Value>) -> Result<(Scope, Option<i64>, Option<&Value>), ApiError> {
    let Some(meta) = meta else { return Ok((Scope { echo: json!({}), ..Scope::default() }, None, None)) };
    let meta = meta.as_object().ok_or_else(|| bad_field("/meta", "meta must be an object"))?;
    let nonce = match meta.get("nonce") {
        None | Some(Value::Null) => None,
        Some(nonce) => Some(nonce.as_i64().ok_or_else(|| bad_field("/meta/nonce", "/meta/nonce must be an integer"))?),
    };
    let mut scope = Scope { echo: json!({}), ..Scope::default() };
    if let Some(raw) = meta.get("scope").filter(|s| !s.is_null()) {
        let object = raw.as_object().ok_or_else(|| bad_field("/meta/scope", "/meta/scope must be an object"))?;
        // A scope this server can't check is refused, not ignored: a
        // client asking for it must not be told VALID without it.
        let empty = |value: &Value| match value {
            Value::Null => true,
            Value::String(text) => text.is_empty(),
            Value::Array(items) => items.is_empty(),
            _ => false,
        };
        if let Some((name, _)) = object.iter().find(|(name, value)| !SCOPES.contains(&name.as_str()) && !empty(value)) {
            return Err(bad_field(
                &format!("/meta/scope/{name}"),
                format!(
                    "the {name} scope is not supported here (fingerprint, fingerprints, product, entitlements are)"
                ),
            ));
        }
        scope.echo = raw.clone();
        if let Some(one) = object.get("fingerprint").filter(|v| !v.is_null()) {
            scope.fingerprints.push(text(one, "/meta/scope/fingerprint")?);
        }
        if let Some(many) = object.get("fingerprints").filter(|v| !v.is_null()) {
            scope.fingerprints.extend(strings(many, "/meta/scope/fingerprints", MAX_FINGERPRINTS)?);
            scope.several = true;
        }
        if let Some(product) = object.get("product").filter(|v| !v.is_null()) {
            scope.product = Some(text(product, "/meta/scope/product")?).filter(|p| !p.trim().is_empty());
        }
        if let Some(entitlements) = object.get("entitlements").filter(|v| !v.is_null()) {
            scope.entitlements = strings(entitlements, "/meta/scope/entitlements", MAX_ENTITLEMENTS)?;
        }
    }
    for fingerprint in &scope.fingerprints {
        MachineId::parse(fingerprint).map_err(|e| bad_field("/meta/scope/fingerprint", format!("fingerprint {e}")))?;
    }
    Ok((scope, nonce, meta.get("key")))
}

/// A validation's outcome: Keygen's code and its detail.
struct Outcome {
    code: &'static str,
    detail: String,
    license: Option<Arc<License>>,
}

impl Outcome {
    fn of(code: &'static str, detail: impl Into<String>, license: &Arc<License>) -> Self {
        Self { code, detail: detail.into(), license: Some(license.clone()) }
    }
}

/// Keygen's code for a refusal of the license rules.
fn refusal(reason: &LicenseError) -> (&'static str, &'static str) {
    match reason {
        LicenseError::NotFound => ("NOT_FOUND", "does not exist"),
        LicenseError::Revoked => ("BANNED", "is revoked"),
        LicenseError::Suspended => ("SUSPENDED", "is suspended"),
        LicenseError::Expired => ("EXPIRED", "is expired"),
        LicenseError::DeviceBlocked => ("BANNED", "fingerprint is blocked from this license"),
        LicenseError::HeartbeatDead => ("HEARTBEAT_DEAD", "machine heartbeat is dead"),
        LicenseError::ProductMismatch => ("PRODUCT_SCOPE_MISMATCH", "product scope does not match"),
        LicenseError::FeatureMissing { .. } => ("ENTITLEMENTS_MISSING", "is missing one or more required entitlements"),
        _ => ("FINGERPRINT_SCOPE_MISMATCH", "fingerprint is not activated (does not match any associated machines)"),
    }
}

async fn decide(
    state: &AppState,
    context: &RequestContext,
    visible: Visible,
    scope: &Scope,
) -> Result<Outcome, ApiError> {
    let now = Utc::now();
    let license = visible.license;
    // A refusal from memory is confirmed on the log first, as every
    // client call does.
    let license = match license.ensure_usable(now) {
        Ok(()) => license,
        Err(_) => {
            let (current, _, _) = state.licenses.load(&license.id).await.map_err(ApiError::internal)?;
            Arc::new(current)
        }
    };
    if let Err(reason) = license.ensure_usable(now) {
        let (code, detail) = refusal(&reason);
        return Ok(Outcome::of(code, detail, &license));
    }
    let product = state.client.product_of(&license).await?;
    if let Some(wanted) = &scope.product {
        let matches = license.product_id.as_ref().is_some_and(|id| id.as_str() == wanted)
            || product.as_ref().is_some_and(|product| product.code.as_str() == wanted);
        if !matches {
            return Ok(Outcome::of("PRODUCT_SCOPE_MISMATCH", "product scope does not match", &license));
        }
    }
    let call = keyledger_http::dialect::client_call(context, None);
    let wants = Wants { product_id: None, features: Some(&scope.entitlements), app_version: None };
    if scope.fingerprints.is_empty() {
        let product_features: Vec<String> =
            product.as_ref().map(|product| product.features.clone()).unwrap_or_default();
        return Ok(match license.check_entitlements(None, &scope.entitlements, &product_features) {
            Ok(()) => Outcome::of("VALID", "is valid", &license),
            Err(reason) => {
                let (code, detail) = refusal(&reason);
                Outcome::of(code, detail, &license)
            }
        });
    }
    if license.devices.is_empty() && scope.fingerprints.iter().all(|fp| !was_culled(state, &license, fp)) {
        return Ok(if scope.several {
            Outcome::of("NO_MACHINES", "fingerprint is not activated (has no associated machines)", &license)
        } else {
            Outcome::of("NO_MACHINE", "fingerprint is not activated (has no associated machine)", &license)
        });
    }
    let mut checked = license.clone();
    for fingerprint in &scope.fingerprints {
        let machine = state.client.machine(MachineId::parse(fingerprint).map_err(ApiError::internal)?);
        if let Some(device) = checked.device(&machine.hash) {
            let heartbeat_policy = checked.policy.heartbeat_secs.is_some();
            if heartbeat_policy && resources::heartbeat_status(&checked, device, now) == "NOT_STARTED" {
                return Ok(Outcome::of("HEARTBEAT_NOT_STARTED", "machine heartbeat is required", &checked));
            }
        }
        match state.client.check(&call, &checked, &machine, wants, Beat::Validate).await? {
            Ok(valid) => checked = valid.license,
            Err(reason) => {
                let (code, detail) = refusal(&reason);
                return Ok(Outcome::of(code, detail, &checked));
            }
        }
    }
    Ok(Outcome::of("VALID", "is valid", &checked))
}

/// Whether the machine's seat was freed because its heartbeats stopped.
fn was_culled(state: &AppState, license: &License, fingerprint: &str) -> bool {
    let Ok(id) = MachineId::parse(fingerprint) else { return false };
    let hash = state.client.machine(id).hash;
    license.past_devices.iter().any(|device| device.culled && device.machine == hash)
}

/// A validation's `meta`.
#[derive(serde::Serialize)]
struct ValidationMeta<'a> {
    ts: String,
    valid: bool,
    detail: &'a str,
    code: &'static str,
    scope: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<i64>,
}

#[derive(serde::Serialize)]
struct ValidationDocument<'a> {
    meta: ValidationMeta<'a>,
    data: Option<resources::LicenseResource<'a>>,
}

/// The answer of a validation: always 200.
async fn validation_answer(
    state: &AppState,
    outcome: Outcome,
    scope: Scope,
    nonce: Option<i64>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let product = match &outcome.license {
        Some(license) => state.client.product_of(license).await?,
        None => None,
    };
    let features = match &outcome.license {
        Some(license) => keyledger_app::client::features(license, product.as_deref()),
        None => Vec::new(),
    };
    let meta = ValidationMeta {
        ts: instant(now),
        valid: outcome.code == "VALID",
        detail: &outcome.detail,
        code: outcome.code,
        scope: &scope.echo,
        nonce,
    };
    let data = outcome.license.as_deref().map(|license| resources::license_resource(license, &features, now));
    let bytes = serde_json::to_vec(&ValidationDocument { meta, data }).map_err(ApiError::internal)?;
    Ok(document_bytes(StatusCode::OK, bytes))
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/ping",
    tag = "keygen",
    operation_id = "keygen_ping",
    summary = "Keygen's service ping: 204, signed",
    params(("account" = String, Path, description = "The tenant's id")),
    responses((status = 204, description = "Up"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json"))
)]
async fn ping(State(state): State<AppState>, PathParam(raw_account): PathParam) -> Response {
    answer(account(&state, &raw_account).await.map(|_| StatusCode::NO_CONTENT.into_response()))
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses/actions/validate-key",
    tag = "keygen",
    operation_id = "keygen_validate_key",
    summary = "Validate a license key, with a fingerprint, product or entitlements scope (always 200)",
    params(("account" = String, Path, description = "The tenant's id")),
    request_body = ValidationRequest,
    responses((status = 200, description = "{meta: {ts, valid, detail, code, scope, nonce?}, data: license or null}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security((), ("license" = []))
)]
async fn validate_key(
    State(state): State<AppState>,
    context: RequestContext,
    PathParam(raw_account): PathParam,
    body: Result<JsonBody<ValidationRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let JsonBody(request) = body?;
            let (scope, nonce, key) = read_meta(request.meta.as_ref())?;
            let key = key.ok_or_else(|| bad_field("/meta/key", "/meta/key is required"))?;
            let key = key.as_str().ok_or_else(|| bad_field("/meta/key", "/meta/key must be a string"))?;
            let outcome = match LicenseKey::parse(key) {
                Err(_) => None,
                Ok(key) => match state.client.resolve_in(&tenant_id, &key).await {
                    Ok(visible) => Some(visible),
                    Err(keyledger_app::client::ClientError::Refused(_)) => None,
                    Err(other) => return Err(other.into()),
                },
            };
            let outcome = match outcome {
                Some(visible) => decide(&state, &context, visible, &scope).await?,
                None => Outcome { code: "NOT_FOUND", detail: "does not exist".to_owned(), license: None },
            };
            let guessed = outcome.license.is_none();
            let mut response = validation_answer(&state, outcome, scope, nonce).await?;
            if guessed {
                // Counted towards the address's progressive block, as an
                // unknown key is on every client endpoint.
                response.extensions_mut().insert(keyledger_http::dialect::FailedGuess);
            }
            Ok(response)
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses/{id}/actions/validate",
    tag = "keygen",
    operation_id = "keygen_validate",
    summary = "Validate a license by its id (its license key, or an admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    request_body = ValidationRequest,
    responses((status = 200, description = "{meta: {ts, valid, detail, code, scope, nonce?}, data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn validate_by_id(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
    body: Result<JsonBody<ValidationRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, tenant) = account(&state, &raw_account).await?;
            let credential = credential?;
            let license = license_by_id(&state, &tenant_id, &credential, &license_id).await?;
            // A bodyless POST validates without a scope.
            let request = match body {
                Ok(JsonBody(request)) => request,
                Err(error) if error.code == "unsupported_media_type" => ValidationRequest::default(),
                Err(error) => return Err(error),
            };
            let (scope, nonce, _) = read_meta(request.meta.as_ref())?;
            let outcome = decide(&state, &context, Visible { license, tenant }, &scope).await?;
            validation_answer(&state, outcome, scope, nonce).await
        }
        .await,
    )
}

/// A license's resource document.
async fn license_document(state: &AppState, license: &Arc<License>) -> Result<Response, ApiError> {
    let product = state.client.product_of(license).await?;
    let features = keyledger_app::client::features(license, product.as_deref());
    Ok(document(StatusCode::OK, json!({ "data": resources::license(license, &features, Utc::now()) })))
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/me",
    tag = "keygen",
    operation_id = "keygen_me",
    summary = "Who is calling: the license its key opens",
    params(("account" = String, Path, description = "The tenant's id")),
    responses((status = 200, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []))
)]
async fn me(
    State(state): State<AppState>,
    PathParam(raw_account): PathParam,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            match credential? {
                Credential::License(key) => {
                    let visible = licensed(&state, &tenant_id, &key).await?;
                    license_document(&state, &visible.license).await
                }
                Credential::Admin(_) => Err(ApiError::bad_request(
                    "NOT_SUPPORTED",
                    "/me answers for a license key; an admin token has no Keygen user here",
                )),
                Credential::None => Err(ApiError::unauthorized("This needs a license key").with_code("TOKEN_INVALID")),
            }
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/licenses/{id}",
    tag = "keygen",
    operation_id = "keygen_license",
    summary = "A license (its own license key, or an admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn show_license(
    State(state): State<AppState>,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let license = license_by_id(&state, &tenant_id, &credential?, &license_id).await?;
            license_document(&state, &license).await
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/licenses/{id}/entitlements",
    tag = "keygen",
    operation_id = "keygen_license_entitlements",
    summary = "A license's entitlements: its features and its product's",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: [entitlement]}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn entitlements(
    State(state): State<AppState>,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let license = license_by_id(&state, &tenant_id, &credential?, &license_id).await?;
            let product = state.client.product_of(&license).await?;
            let data: Vec<Value> = keyledger_app::client::features(&license, product.as_deref())
                .into_iter()
                .map(|code| resources::entitlement(&license, code))
                .collect();
            let count = data.len();
            Ok(document(StatusCode::OK, json!({ "data": data, "meta": { "count": count } })))
        }
        .await,
    )
}
