//! Keygen's API (keygen.sh), as far as its published client libraries
//! use it, so software built on them moves to keyledger by changing its
//! API URL to `https://host/keygen/<tenant id>`: they call
//! `{api_url}/v1/{path}`. JSON:API in and out; `Authorization: License
//! <key>` for a client holding a license key, `Authorization: Bearer
//! <admin key>` for the vendor's backend; every answer, errors and empty
//! ones included, signed as Keygen signs (`Keygen-Signature` over the
//! request line, host, date and digest, with the tenant's Ed25519 key:
//! [`sign`]).
//!
//! Over the same client service and commands as every dialect: a machine
//! activated here is a device everywhere, its events in the one history.
//! What this dialect adds is wire format only: Keygen's resource objects
//! ([`resources`]), its validation codes ([`validate`]), its license and
//! machine files ([`files`]); the vendor backend's licenses ([`admin`],
//! [`create`]) and catalog ([`catalog`]). docs/dialects/keygen.md has the details.

mod admin;
mod body;
mod catalog;
mod create;
mod files;
mod machines;
mod resources;
mod sign;
mod validate;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_app::client::Visible;
use keyledger_app::signing::{Directory, TenantKeys};
use keyledger_domain::{License, LicenseKey};
use serde_json::{json, Value};
use std::sync::Arc;

use keyledger_http::auth::{Caller, Role};
use keyledger_http::dialect::{RequestHead, Sealing};
use keyledger_http::error::{ApiError, ErrorParts};
use keyledger_http::state::AppState;
use keyledger_http::Routes;

/// Where the dialect is mounted; `{account}` is the tenant's id.
pub(crate) const PREFIX: &str = "/keygen/";

/// The media type of JSON:API, which Keygen speaks.
const JSON_API: &str = "application/vnd.api+json";

/// Keygen's API as its client libraries call it.
pub struct Keygen;

impl keyledger_http::Dialect for Keygen {
    fn name(&self) -> &'static str {
        "keygen"
    }

    fn owns(&self, path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    fn routes(&self) -> Routes {
        Routes::new()
            .merge(validate::routes())
            .merge(machines::routes())
            .merge(files::routes())
            .merge(admin::routes())
            .merge(create::routes())
            .merge(catalog::routes())
    }

    /// Everything but the vendor backend's calls ([`admin`], [`create`],
    /// [`catalog`]), which are management calls limited per key.
    fn is_client_route(&self, route: &str) -> bool {
        !(admin::ROUTES.contains(&route) || create::ROUTES.contains(&route) || catalog::ROUTES.contains(&route))
    }

    fn render_error(
        &self,
        _directory: &Directory,
        _path: &str,
        status: StatusCode,
        error: &ErrorParts,
    ) -> Option<Response> {
        Some(error_response(status, error))
    }

    fn seals(&self) -> bool {
        true
    }

    fn seal<'a>(&'a self, directory: &'a Directory, head: &'a RequestHead, response: Response) -> Sealing<'a> {
        Box::pin(sign::seal(directory, head, response))
    }
}

/// Keygen's error codes for keyledger's own, and their titles.
fn keygen_code(status: StatusCode, code: &str) -> (&'static str, &'static str) {
    match code {
        "license_not_found" | "route_not_found" | "not_found" => ("NOT_FOUND", "Not found"),
        "seat_limit_reached" | "bound_to_another_machine" => ("MACHINE_LIMIT_EXCEEDED", "Unprocessable resource"),
        "license_suspended" => ("LICENSE_SUSPENDED", "Unprocessable resource"),
        "license_expired" => ("LICENSE_EXPIRED", "Unprocessable resource"),
        "license_revoked" => ("LICENSE_NOT_ALLOWED", "Unprocessable resource"),
        "machine_not_activated" => ("NOT_FOUND", "Not found"),
        "device_blocked" => ("MACHINE_BANNED", "Access denied"),
        "heartbeat_dead" => ("HEARTBEAT_DEAD", "Unprocessable resource"),
        "rate_limited" | "blocked" => ("RATE_LIMITED", "Too many requests"),
        "internal" => ("INTERNAL_ERROR", "Internal server error"),
        _ => match status {
            StatusCode::UNAUTHORIZED => ("TOKEN_INVALID", "Unauthorized"),
            StatusCode::FORBIDDEN => ("FORBIDDEN", "Access denied"),
            StatusCode::NOT_FOUND => ("NOT_FOUND", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "Payload too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("CONTENT_TYPE_UNSUPPORTED", "Unsupported media type"),
            StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", "Too many requests"),
            StatusCode::UNPROCESSABLE_ENTITY => ("PARAMETER_INVALID", "Unprocessable resource"),
            status if status.is_server_error() => ("INTERNAL_ERROR", "Internal server error"),
            _ => ("PARAMETER_INVALID", "Bad request"),
        },
    }
}

/// An error in Keygen's shape: `{"errors": [{title, detail, code,
/// source}]}`. A code the handler set in Keygen's own words (upper case)
/// is kept; keyledger's are mapped ([`keygen_code`]). The field at fault
/// is a JSON pointer into the request (`/data/attributes/fingerprint`), or
/// a query parameter when it names one (`?ttl`).
fn error_response(status: StatusCode, error: &ErrorParts) -> Response {
    let (code, title) = if error.code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        (error.code, keygen_code(status, "").1)
    } else {
        keygen_code(status, error.code)
    };
    // Keygen answers a refused activation 422, not 400.
    let status = match code {
        "MACHINE_LIMIT_EXCEEDED"
        | "FINGERPRINT_TAKEN"
        | "LICENSE_SUSPENDED"
        | "LICENSE_EXPIRED"
        | "LICENSE_NOT_ALLOWED"
        | "HEARTBEAT_DEAD" => StatusCode::UNPROCESSABLE_ENTITY,
        "MACHINE_BANNED" => StatusCode::FORBIDDEN,
        _ if status == StatusCode::BAD_REQUEST && error.field.is_some() => StatusCode::BAD_REQUEST,
        _ => status,
    };
    let mut object = json!({ "title": title, "detail": error.message, "code": code });
    match error.field.as_deref() {
        Some(parameter) if parameter.starts_with('?') => object["source"] = json!({ "parameter": &parameter[1..] }),
        Some(pointer) if pointer.starts_with('/') => object["source"] = json!({ "pointer": pointer }),
        Some(field) => object["source"] = json!({ "pointer": format!("/{field}") }),
        None => {}
    }
    let mut response = (status, axum::Json(json!({ "errors": [object] }))).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(JSON_API));
    response
}

/// A handler's outcome as the answer: an error is rendered in Keygen's
/// shape by [`keyledger_http::Dialect::render_error`].
pub(super) fn answer(result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(response) => response,
        // An unknown license key presented as a credential is a failed
        // guess, counted towards the address's progressive block.
        Err(error) if error.code == "LICENSE_INVALID" => {
            let mut response = error.into_response();
            response.extensions_mut().insert(keyledger_http::dialect::FailedGuess);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// A JSON:API document, already written, answered with its media type.
pub(super) fn document_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(JSON_API));
    response
}

/// A JSON:API document answered with its media type.
pub(super) fn document(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(JSON_API));
    response
}

/// An error about one field of the request body, at its JSON pointer.
pub(super) fn bad_field(pointer: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("PARAMETER_INVALID", message).with_field(pointer)
}

/// The tenant a request's `{account}` names: its id (a UUID) with its
/// signing keys. An unknown or malformed one is a 404, as Keygen answers
/// an unknown account.
pub(super) async fn account(state: &AppState, raw: &str) -> Result<(String, Arc<TenantKeys>), ApiError> {
    let unknown = || ApiError::not_found("The account does not exist").with_code("NOT_FOUND");
    let tenant_id = uuid::Uuid::parse_str(raw.trim()).map_err(|_| unknown())?.to_string();
    let keys = state.directory.tenant(&tenant_id).await.map_err(ApiError::internal)?.ok_or_else(unknown)?;
    Ok((tenant_id, keys))
}

/// Who presents what: Keygen's two schemes.
pub(super) enum Credential {
    /// `Authorization: License <key>`: a client holding a license key; it
    /// may act on that license and its machines only.
    License(LicenseKey),
    /// `Authorization: Bearer <key>`: a tenant admin key (the vendor's
    /// backend).
    Admin(Caller),
    None,
}

impl Credential {
    /// The admin presenting a token, who is recorded as the actor of what
    /// it does; a license key's calls are the device's own.
    pub(super) fn admin(&self) -> Option<&Caller> {
        match self {
            Credential::Admin(caller) => Some(caller),
            _ => None,
        }
    }
}

impl FromRequestParts<AppState> for Credential {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else { return Ok(Credential::None) };
        let invalid = |code: &'static str, message: &str| ApiError::unauthorized(message).with_code(code);
        let value =
            value.to_str().map_err(|_| invalid("TOKEN_FORMAT_INVALID", "The Authorization header is not text"))?;
        let (scheme, secret) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let secret = secret.trim();
        if scheme.eq_ignore_ascii_case("license") {
            let key =
                LicenseKey::parse(secret).map_err(|_| invalid("LICENSE_INVALID", "The license key is invalid"))?;
            return Ok(Credential::License(key));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let caller = state.auth.authenticate(secret).await.map_err(|error| {
                if error.status == StatusCode::UNAUTHORIZED {
                    invalid("TOKEN_INVALID", "The token is invalid or revoked")
                } else {
                    // The store failed: not the caller's fault.
                    error
                }
            })?;
            return Ok(Credential::Admin(caller));
        }
        Err(invalid("TOKEN_FORMAT_INVALID", "Authorization must be `License <key>` or `Bearer <token>`"))
    }
}

/// The license a request may act on, by its id in the path: the one its
/// license key opens, or any of the account's for its admin. Anything
/// else is a 404, so ids of other licenses and tenants tell nothing.
pub(super) async fn license_by_id(
    state: &AppState,
    tenant_id: &str,
    credential: &Credential,
    license_id: &str,
) -> Result<Arc<License>, ApiError> {
    let not_found = || ApiError::not_found("The license does not exist").with_code("NOT_FOUND");
    match credential {
        Credential::License(key) => {
            let Visible { license, .. } = licensed(state, tenant_id, key).await?;
            if license.id == license_id {
                Ok(license)
            } else {
                Err(ApiError::forbidden("The license key may act on its own license only").with_code("FORBIDDEN"))
            }
        }
        Credential::Admin(caller) => {
            admin_of(caller, tenant_id)?;
            let license = state.licenses.load(license_id).await.map(|(license, _, _)| license);
            match license {
                Ok(license) if license.tenant_id == tenant_id && !license.deleted && license.license_key.is_some() => {
                    Ok(Arc::new(license))
                }
                _ => Err(not_found()),
            }
        }
        Credential::None => {
            Err(ApiError::unauthorized("This needs a license key or a token").with_code("TOKEN_INVALID"))
        }
    }
}

/// The license a license key opens in the account: an unknown key, or one
/// of another account, is refused as an invalid credential.
pub(super) async fn licensed(state: &AppState, tenant_id: &str, key: &LicenseKey) -> Result<Visible, ApiError> {
    let invalid = || ApiError::unauthorized("The license key is invalid").with_code("LICENSE_INVALID");
    match state.client.resolve_in(tenant_id, key).await {
        Ok(visible) => Ok(visible),
        Err(keyledger_app::client::ClientError::Refused(_)) => Err(invalid()),
        Err(other) => Err(other.into()),
    }
}

/// The caller, if it is an admin of the account's tenant.
pub(super) fn admin_of<'a>(caller: &'a Caller, tenant_id: &str) -> Result<&'a Caller, ApiError> {
    match (caller.role, caller.tenant_id.as_deref()) {
        (Role::Admin, Some(own)) if own == tenant_id => Ok(caller),
        (Role::Admin | Role::User | Role::Client | Role::System, Some(own)) if own != tenant_id => {
            Err(ApiError::not_found("The account does not exist").with_code("NOT_FOUND"))
        }
        _ => Err(ApiError::forbidden("This needs a tenant admin key").with_code("FORBIDDEN")),
    }
}
