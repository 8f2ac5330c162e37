//! A tenant's signing keys: listed, rotated and retired by its admins,
//! and published to anyone as a JWKS, which is what a vendor bundles in
//! its software to check signed answers and license tokens offline.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::tenants::parse_tenant_id;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keyledger_app::signing::{jws, PublicKey, Retirement};
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::PathParam;
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

pub fn routes() -> Routes {
    Routes::new().add(routes!(list)).add(routes!(rotate)).add(routes!(retire)).add(routes!(jwks))
}

fn describe(key: &PublicKey, current: bool) -> Value {
    json!({
        "kid": key.kid,
        "algorithm": "Ed25519",
        "publicKey": key.x,
        // What Keygen's client libraries are configured with.
        "publicKeyHex": URL_SAFE_NO_PAD.decode(&key.x).map(hex::encode).ok(),
        "createdAt": key.created_at,
        "retiredAt": key.retired_at,
        "publishedUntil": key.published_until,
        "current": current,
        "jwk": jws::jwk(&key.kid, &key.x),
    })
}

/// Every key of the tenant, newest first, retired ones too; public parts only.
#[utoipa::path(
    get,
    path = "/api/v1/signing-keys",
    tag = "signing keys",
    summary = "The tenant's signing keys, public parts only (tenant admin)",
    responses((status = 200, description = "Keys, newest first", body = crate::native::schemas::SigningKeys), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let keys = state.directory.list(tenant_id).await.map_err(ApiError::internal)?;
    let current = keys.iter().find(|k| k.retired_at.is_none()).map(|k| k.kid.clone());
    let keys: Vec<Value> = keys.iter().map(|k| describe(k, Some(&k.kid) == current.as_ref())).collect();
    Ok(Json(json!({ "keys": keys })))
}

/// A new current key. The previous ones keep verifying until retired.
#[utoipa::path(
    post,
    path = "/api/v1/signing-keys/rotate",
    tag = "signing keys",
    summary = "Make a new current signing key (tenant admin)",
    responses((status = 201, description = "The new key", body = crate::native::schemas::SigningKey), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn rotate(State(state): State<AppState>, caller: Caller) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = caller.require_admin()?;
    let key = state.directory.rotate(tenant_id).await.map_err(ApiError::internal)?;
    tracing::info!(tenant_id, kid = %key.kid, "signing key rotated");
    Ok((StatusCode::CREATED, Json(describe(&key, true))))
}

/// Stops a key signing, everywhere, at once; it stays published (what it
/// signed verifies) for the token lifetime, or not at all with
/// `?immediately=true` (a key thought compromised).
#[utoipa::path(
    delete,
    path = "/api/v1/signing-keys/{kid}",
    tag = "signing keys",
    summary = "Retire a signing key that is not the current one (tenant admin)",
    params(
        ("kid" = String, Path, description = "The key id"),
        ("immediately" = Option<bool>, Query, description = "Drop it from the JWKS at once instead of after the token lifetime")
    ),
    responses((status = 204, description = "Retired: it signs nothing more; published until `publishedUntil`"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(kid): PathParam,
    params: super::audit::QueryParams,
) -> ApiResult<StatusCode> {
    let tenant_id = caller.require_admin()?;
    if kid.len() != 43 || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::field("kid", "kid must be a key id as listed (43 base64url characters)"));
    }
    let params = super::audit::query_params(params)?;
    let immediately = match params.get("immediately").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("immediately", "immediately must be true or false")),
    };
    if let Some(unknown) = params.keys().find(|name| name.as_str() != "immediately") {
        return Err(ApiError::field(unknown, format!("{unknown} is not a parameter of this call (immediately is)")));
    }
    let grace =
        if immediately { std::time::Duration::ZERO } else { state.client.token_ttl().to_std().unwrap_or_default() };
    match state.directory.retire(tenant_id, &kid, grace).await.map_err(ApiError::internal)? {
        Retirement::Retired => {
            tracing::info!(tenant_id, kid, "signing key retired");
            Ok(StatusCode::NO_CONTENT)
        }
        Retirement::NotFound => Err(ApiError::not_found("No such unretired signing key")),
        Retirement::Current => Err(ApiError::bad_request(
            "current_signing_key",
            "This is the tenant's current signing key; rotate to a new one before retiring it",
        )
        .with_status(StatusCode::CONFLICT)),
    }
}

/// Anyone: the tenant's unretired public keys, and the platform's key,
/// which signs refusals that no tenant can be named for.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}/jwks.json",
    tag = "signing keys",
    summary = "The tenant's public keys as a JWKS",
    params(("tenant_id" = String, Path, description = "The tenant id")),
    responses((status = 200, description = "Every unretired key, and the platform key", body = crate::native::schemas::Jwks), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error))
)]
async fn jwks(State(state): State<AppState>, PathParam(raw_id): PathParam) -> ApiResult<Json<Value>> {
    let tenant_id = parse_tenant_id(&raw_id)?;
    let tenant = state
        .directory
        .tenant(&tenant_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("No such tenant"))?;
    let platform = state.directory.platform_public();
    let keys: Vec<Value> =
        tenant.verifying().chain(std::iter::once(platform)).map(|k| jws::jwk(&k.kid, &k.x)).collect();
    Ok(Json(json!({ "keys": keys })))
}
