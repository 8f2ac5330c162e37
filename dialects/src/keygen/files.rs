//! License and machine files, as Keygen's clients verify and decrypt them
//! offline:
//!
//! ```text
//! -----BEGIN LICENSE FILE-----
//! base64 of {"enc": …, "sig": …, "alg": "aes-256-gcm+ed25519" | "base64+ed25519"}
//! -----END LICENSE FILE-----
//! ```
//!
//! `enc` is the payload `{data, included, meta: {issued, expiry, ttl}}`:
//! base64 of its JSON, or AES-256-GCM under SHA-256 of the license key
//! (machine files: the license key followed by the fingerprint) written
//! `ciphertext.iv.tag`, each base64. `sig` is Ed25519, with the account's
//! key, over `license/` (or `machine/`) followed by `enc`. Each checkout
//! is a `LicenseCheckedOut` event in the license's history.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::Signer;
use keyledger_app::signing::TenantKeys;
use keyledger_domain::{License, LicenseCommand};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa_axum::routes;

use super::machines::find;
use super::{account, bad_field, document, license_by_id, resources, Credential};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{PathParams, RequestContext};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub(super) fn routes() -> Routes {
    Routes::new().add(routes!(check_out_license, license_certificate)).add(routes!(check_out_machine))
}

/// Keygen's bounds and default for a file's time to live, in seconds.
const MIN_TTL: u32 = 3600;
const MAX_TTL: u32 = 31_556_952;
const DEFAULT_TTL: u32 = 2_629_746;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Base64,
    Aes256Gcm,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Base64 => "base64+ed25519",
            Algorithm::Aes256Gcm => "aes-256-gcm+ed25519",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    License,
    Machine,
}

/// What a checkout's query asks for.
struct Options {
    algorithm: Algorithm,
    ttl: u32,
    entitlements: bool,
}

fn flag(raw: &str, name: &str) -> Result<bool, ApiError> {
    match raw {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad_field(&format!("?{name}"), format!("{name} must be true or false"))),
    }
}

fn options(query: &HashMap<String, String>, kind: Kind) -> Result<Options, ApiError> {
    const KNOWN: [&str; 4] = ["encrypt", "ttl", "include", "algorithm"];
    if let Some(unknown) = query.keys().find(|name| !KNOWN.contains(&name.as_str())) {
        return Err(bad_field(
            &format!("?{unknown}"),
            format!("{unknown} is not a parameter here (encrypt, ttl, include, algorithm)"),
        ));
    }
    let encrypt = query.get("encrypt").map(|raw| flag(raw, "encrypt")).transpose()?;
    let algorithm = match query.get("algorithm").map(String::as_str) {
        None => None,
        Some("base64+ed25519") => Some(Algorithm::Base64),
        Some("aes-256-gcm+ed25519") => Some(Algorithm::Aes256Gcm),
        Some(_) => {
            return Err(bad_field(
                "?algorithm",
                "algorithm must be base64+ed25519 or aes-256-gcm+ed25519 (the account's key is Ed25519)",
            ))
        }
    };
    let algorithm = match (encrypt, algorithm) {
        (Some(true), Some(Algorithm::Base64)) => {
            return Err(bad_field("?algorithm", "encrypt=true asks for aes-256-gcm+ed25519, not base64+ed25519"))
        }
        (Some(false), Some(Algorithm::Aes256Gcm)) => {
            return Err(bad_field("?encrypt", "encrypt=false asks for base64+ed25519, not aes-256-gcm+ed25519"))
        }
        (_, Some(algorithm)) => algorithm,
        (Some(true), None) => Algorithm::Aes256Gcm,
        (_, None) => Algorithm::Base64,
    };
    let ttl = match query.get("ttl").map(String::as_str) {
        None => DEFAULT_TTL,
        Some(raw) => raw.parse::<u32>().ok().filter(|ttl| (MIN_TTL..=MAX_TTL).contains(ttl)).ok_or_else(|| {
            bad_field("?ttl", format!("ttl must be seconds from {MIN_TTL} to {MAX_TTL} (files here always expire)"))
        })?,
    };
    let mut entitlements = false;
    if let Some(include) = query.get("include") {
        for part in include.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match (kind, part) {
                (Kind::License, "entitlements") | (Kind::Machine, "license.entitlements") => entitlements = true,
                (Kind::License, "product" | "policy" | "machines" | "owner" | "users" | "group")
                | (
                    Kind::Machine,
                    "license" | "license.product" | "license.policy" | "components" | "owner" | "group",
                ) => {}
                _ => return Err(bad_field("?include", format!("include may not name {part}"))),
            }
        }
    }
    Ok(Options { algorithm, ttl, entitlements })
}

/// The signed certificate of a payload.
fn certificate(
    kind: Kind,
    algorithm: Algorithm,
    payload: &Value,
    secret: &str,
    tenant: &TenantKeys,
) -> Result<String, ApiError> {
    let plain = serde_json::to_vec(payload).map_err(ApiError::internal)?;
    let enc = match algorithm {
        Algorithm::Base64 => STANDARD.encode(&plain),
        Algorithm::Aes256Gcm => {
            let key = Sha256::digest(secret.as_bytes());
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| ApiError::internal("AES key"))?);
            let mut iv = [0u8; 12];
            SystemRandom::new().fill(&mut iv).map_err(|_| ApiError::internal("no randomness for an IV"))?;
            let mut sealed = plain;
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut sealed)
                .map_err(|_| ApiError::internal("AES-GCM sealing failed"))?;
            let tag = sealed.split_off(sealed.len() - 16);
            format!("{}.{}.{}", STANDARD.encode(&sealed), STANDARD.encode(iv), STANDARD.encode(tag))
        }
    };
    let prefix = match kind {
        Kind::License => "license",
        Kind::Machine => "machine",
    };
    let signature = tenant.current.key.sign(format!("{prefix}/{enc}").as_bytes());
    let wrapped = STANDARD.encode(
        serde_json::to_vec(
            &json!({ "enc": enc, "sig": STANDARD.encode(signature.to_bytes()), "alg": algorithm.name() }),
        )
        .map_err(ApiError::internal)?,
    );
    let lines: Vec<&str> =
        wrapped.as_bytes().chunks(76).map(|chunk| std::str::from_utf8(chunk).unwrap_or_default()).collect();
    let label = match kind {
        Kind::License => "LICENSE FILE",
        Kind::Machine => "MACHINE FILE",
    };
    Ok(format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n")))
}

/// Records the checkout: refused unless the license may be used now (and
/// the machine holds a seat).
async fn record(
    state: &AppState,
    context: &RequestContext,
    credential: &Credential,
    license: &License,
    machine: Option<&keyledger_domain::MachineHash>,
    ttl: u32,
    at: DateTime<Utc>,
) -> Result<Arc<License>, ApiError> {
    let call = keyledger_http::dialect::client_call(context, credential.admin());
    let command = LicenseCommand::CheckOut { machine: machine.cloned(), ttl_secs: ttl, at };
    Ok(Arc::new(state.client.execute(&call, license, command).await?))
}

fn file_document(
    kind: Kind,
    certificate: String,
    issued: DateTime<Utc>,
    options: &Options,
    license: &License,
) -> Response {
    let expiry = issued + chrono::Duration::seconds(options.ttl.into());
    let kind_name = match kind {
        Kind::License => "license-files",
        Kind::Machine => "machine-files",
    };
    document(
        StatusCode::OK,
        json!({ "data": {
            "id": uuid::Uuid::new_v4().to_string(),
            "type": kind_name,
            "attributes": {
                "certificate": certificate,
                "ttl": options.ttl,
                "expiry": instant(expiry),
                "issued": instant(issued),
            },
            "relationships": {
                "account": { "data": { "type": "accounts", "id": license.tenant_id.as_str() } },
                "license": { "data": { "type": "licenses", "id": license.id.as_str() } },
            },
        }}),
    )
}

type RawQuery = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn query_of(raw: RawQuery) -> Result<HashMap<String, String>, ApiError> {
    raw.map(|Query(query)| query).map_err(|e| ApiError::bad_request("PARAMETER_INVALID", e.body_text()))
}

/// A license file: the certificate, the license it was issued for and
/// when, and its options.
async fn license_file(
    state: &AppState,
    context: &RequestContext,
    raw_account: &str,
    license_id: &str,
    credential: Result<Credential, ApiError>,
    query: RawQuery,
) -> Result<(String, DateTime<Utc>, Options, Arc<License>), ApiError> {
    let (tenant_id, tenant) = account(state, raw_account).await?;
    let credential = credential?;
    let options = options(&query_of(query)?, Kind::License)?;
    let license = license_by_id(state, &tenant_id, &credential, license_id).await?;
    let issued = Utc::now();
    let license = record(state, context, &credential, &license, None, options.ttl, issued).await?;
    let product = state.client.product_of(&license).await?;
    let features = keyledger_app::client::features(&license, product.as_deref());
    let included: Vec<Value> = if options.entitlements {
        features.iter().map(|code| resources::entitlement(&license, code)).collect()
    } else {
        Vec::new()
    };
    let payload = json!({
        "meta": { "issued": instant(issued), "expiry": instant(issued + chrono::Duration::seconds(options.ttl.into())), "ttl": options.ttl },
        "data": resources::license(&license, &features, issued),
        "included": included,
    });
    let secret = license.license_key.as_ref().map(|key| key.as_str().to_owned()).unwrap_or_default();
    let certificate = certificate(Kind::License, options.algorithm, &payload, &secret, &tenant)?;
    Ok((certificate, issued, options, license))
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses/{id}/actions/check-out",
    tag = "keygen",
    operation_id = "keygen_check_out_license",
    summary = "Check out a license file (query: encrypt, algorithm, ttl, include)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: license-file {certificate, ttl, expiry, issued}}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn check_out_license(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
    query: RawQuery,
) -> Response {
    match license_file(&state, &context, &raw_account, &license_id, credential, query).await {
        Ok((certificate, issued, options, license)) => {
            file_document(Kind::License, certificate, issued, &options, &license)
        }
        Err(error) => error.into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/licenses/{id}/actions/check-out",
    tag = "keygen",
    operation_id = "keygen_license_certificate",
    summary = "Check out a license file, answered as the certificate itself",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "The certificate (text)", body = String, content_type = "application/octet-stream"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn license_certificate(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
    query: RawQuery,
) -> Response {
    match license_file(&state, &context, &raw_account, &license_id, credential, query).await {
        Ok((certificate, _, _, license)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.lic\"", license.id)),
            ],
            certificate,
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/machines/{id}/actions/check-out",
    tag = "keygen",
    operation_id = "keygen_check_out_machine",
    summary = "Check out a machine file (query: encrypt, algorithm, ttl, include); it includes its license",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The machine's id or fingerprint")),
    responses((status = 200, description = "{data: machine-file {certificate, ttl, expiry, issued}}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn check_out_machine(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, raw_id): PathParams,
    credential: Result<Credential, ApiError>,
    query: RawQuery,
) -> Response {
    let result = async {
        let (tenant_id, tenant) = account(&state, &raw_account).await?;
        let credential = credential?;
        let options = options(&query_of(query)?, Kind::Machine)?;
        let found = find(&state, &tenant_id, &credential, &raw_id).await?;
        let fingerprint = match (&found.fingerprint, options.algorithm) {
            (Some(fingerprint), _) => fingerprint.clone(),
            (None, Algorithm::Base64) => found.device.id(&found.license.id).to_string(),
            (None, Algorithm::Aes256Gcm) => {
                return Err(ApiError::bad_request(
                    "FINGERPRINT_UNKNOWN",
                    "this machine was activated outside Keygen's API, so its fingerprint is not kept here: \
                     check it out with its fingerprint as its id to encrypt the file",
                )
                .with_status(StatusCode::UNPROCESSABLE_ENTITY))
            }
        };
        let issued = Utc::now();
        let license =
            record(&state, &context, &credential, &found.license, Some(&found.machine.hash), options.ttl, issued).await?;
        let device = license.device(&found.machine.hash).cloned().unwrap_or(found.device);
        let product = state.client.product_of(&license).await?;
        let features = keyledger_app::client::features(&license, product.as_deref());
        let mut included = vec![resources::license(&license, &features, issued)];
        if options.entitlements {
            included.extend(features.iter().map(|code| resources::entitlement(&license, code)));
        }
        let payload = json!({
            "meta": { "issued": instant(issued), "expiry": instant(issued + chrono::Duration::seconds(options.ttl.into())), "ttl": options.ttl },
            "data": resources::machine(&license, &device, Some(&fingerprint), issued),
            "included": included,
        });
        let key = license.license_key.as_ref().map(|key| key.as_str()).unwrap_or_default();
        let certificate = certificate(Kind::Machine, options.algorithm, &payload, &format!("{key}{fingerprint}"), &tenant)?;
        Ok(file_document(Kind::Machine, certificate, issued, &options, &license))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
