//! Machines: activate (`POST /machines`), show, deactivate (`DELETE`),
//! heartbeat (`…/actions/ping`) and a license's list. A machine is a
//! device holding a seat; its id is the device's id, and `{id}` may also
//! be its fingerprint, as Keygen allows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keyledger_app::client::{Activation, Beat, Machine, Wants};
use keyledger_domain::{Device, License, LicenseError, MachineId};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::{account, admin_of, answer, bad_field, document, license_by_id, licensed, resources, Credential};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParams, RequestContext};
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(routes!(activate))
        .add(routes!(show, deactivate))
        .add(routes!(heartbeat))
        .add(routes!(license_machines))
}

/// The fingerprint as the client sent it, checked as a machine id is.
fn fingerprint(raw: &str, pointer: &str) -> Result<MachineId, ApiError> {
    MachineId::parse(raw).map_err(|e| bad_field(pointer, format!("fingerprint {e}")))
}

/// A machine a request names, with its license.
pub(super) struct Found {
    pub license: Arc<License>,
    pub device: Device,
    pub machine: Machine,
    /// The fingerprint, when known: named in the path, or kept at
    /// activation.
    pub fingerprint: Option<String>,
}

/// The machine `{id}` names (its id or its fingerprint) among those the
/// caller may act on: its license key's license's, or any of the
/// account's for its admin. Anything else is a 404.
pub(super) async fn find(
    state: &AppState,
    tenant_id: &str,
    credential: &Credential,
    raw_id: &str,
) -> Result<Found, ApiError> {
    let not_found = || ApiError::not_found("The machine does not exist").with_code("NOT_FOUND");
    let as_fingerprint = MachineId::parse(raw_id).ok().map(|id| state.client.machine(id));
    let holds = |license: &License, device: &Device| {
        device.id(&license.id) == raw_id
            || as_fingerprint.as_ref().is_some_and(|machine| machine.hash == device.machine)
    };
    let license = match credential {
        Credential::License(key) => licensed(state, tenant_id, key).await?.license,
        Credential::Admin(caller) => {
            admin_of(caller, tenant_id)?;
            let mut found = state
                .client
                .tenant_licenses_where(tenant_id, |license| {
                    !license.deleted
                        && (license.devices.iter().any(|d| holds(license, d))
                            || license.past_devices.iter().any(|d| d.culled && holds(license, d)))
                })
                .await;
            if found.len() > 1 {
                // One fingerprint on several licenses: the id says which.
                return Err(bad_field(
                    "?id",
                    "this fingerprint is activated on several licenses of the account; name the machine by its id",
                ));
            }
            found.pop().ok_or_else(not_found)?
        }
        Credential::None => {
            return Err(ApiError::unauthorized("This needs a license key or a token").with_code("TOKEN_INVALID"))
        }
    };
    let Some(device) = license.devices.iter().find(|device| holds(&license, device)).cloned() else {
        // A machine whose seat was freed when its heartbeats stopped is
        // Keygen's dead machine, not an unknown one.
        return Err(if license.past_devices.iter().any(|device| device.culled && holds(&license, device)) {
            ApiError::bad_request("HEARTBEAT_DEAD", "machine heartbeat is dead; activate it again")
                .with_status(StatusCode::UNPROCESSABLE_ENTITY)
        } else {
            not_found()
        });
    };
    let by_fingerprint = as_fingerprint.as_ref().is_some_and(|machine| machine.hash == device.machine);
    let fingerprint = if by_fingerprint {
        Some(raw_id.trim().to_owned())
    } else {
        let kept = state.fingerprints.of_license(&license.id).await.map_err(ApiError::internal)?;
        kept.get(&device.id(&license.id).to_string()).cloned()
    };
    let id = MachineId::parse(fingerprint.as_deref().unwrap_or(raw_id)).map_err(|_| not_found())?;
    let machine = Machine { id, hash: device.machine.clone() };
    Ok(Found { license, device, machine, fingerprint })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct MachineRequest {
    #[schema(value_type = Object)]
    data: Option<Value>,
}

/// A field of a JSON:API resource in a request body: `data.attributes.x`
/// or `data.relationships.x.data.id`.
fn attribute<'a>(data: &'a Value, name: &str) -> Option<&'a Value> {
    data.get("attributes").and_then(|a| a.get(name)).filter(|v| !v.is_null())
}

fn optional_text<'a>(data: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    match attribute(data, name) {
        None => Ok(None),
        Some(value) => value
            .as_str()
            .map(Some)
            .ok_or_else(|| bad_field(&format!("/data/attributes/{name}"), format!("{name} must be a string"))),
    }
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/machines",
    tag = "keygen",
    operation_id = "keygen_activate",
    summary = "Activate a machine: take a seat of the license for its fingerprint (201)",
    params(("account" = String, Path, description = "The tenant's id")),
    request_body = MachineRequest,
    responses((status = 201, description = "{data: machine}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}; FINGERPRINT_TAKEN, MACHINE_LIMIT_EXCEEDED", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn activate(
    State(state): State<AppState>,
    context: RequestContext,
    axum::extract::Path(raw_account): axum::extract::Path<String>,
    credential: Result<Credential, ApiError>,
    body: Result<JsonBody<MachineRequest>, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let credential = credential?;
            let JsonBody(request) = body?;
            let data = request.data.ok_or_else(|| bad_field("/data", "data is required"))?;
            if !data.is_object() {
                return Err(bad_field("/data", "data must be a resource object"));
            }
            if data.get("type").and_then(Value::as_str).is_some_and(|t| t != "machines" && t != "machine") {
                return Err(bad_field("/data/type", "type must be machines"));
            }
            let raw_fingerprint = optional_text(&data, "fingerprint")?
                .ok_or_else(|| bad_field("/data/attributes/fingerprint", "fingerprint is required"))?;
            let id = fingerprint(raw_fingerprint, "/data/attributes/fingerprint")?;
            let name = match optional_text(&data, "name")? {
                Some(name) => Some(name),
                None => optional_text(&data, "hostname")?,
            };
            let license_id = data
                .pointer("/relationships/license/data/id")
                .filter(|v| !v.is_null())
                .ok_or_else(|| bad_field("/data/relationships/license", "the license relationship is required"))?
                .as_str()
                .ok_or_else(|| bad_field("/data/relationships/license/data/id", "the license id must be a string"))?;
            let license = license_by_id(&state, &tenant_id, &credential, license_id).await?;
            let machine = state.client.machine(id);
            if license.device(&machine.hash).is_some() {
                return Err(ApiError::bad_request("FINGERPRINT_TAKEN", "has already been taken for this license")
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                    .with_field("/data/attributes/fingerprint"));
            }
            let call = keyledger_http::dialect::client_call(&context, credential.admin());
            let activation = Activation { machine_name: name, app_version: None };
            let license = state.client.activate(&call, &license, &machine, activation).await.map_err(|error| {
                let error = ApiError::from(error);
                if error.field.as_deref() == Some("machineName") {
                    error.with_field("/data/attributes/name")
                } else {
                    error
                }
            })?;
            let device = license
                .device(&machine.hash)
                .cloned()
                .ok_or_else(|| ApiError::internal("an activation answered without the device it activated"))?;
            let device_id = device.id(&license.id).to_string();
            // The seat is taken and in the log; a fingerprint not kept
            // only shows the machine's id in its place.
            if let Err(error) =
                state.fingerprints.keep(&tenant_id, &license.id, &device_id, raw_fingerprint.trim()).await
            {
                tracing::warn!(
                    error = %keyledger_app::client::error_chain(&error),
                    device_id,
                    "a Keygen machine's fingerprint was not kept"
                );
            }
            let body = resources::machine(&license, &device, Some(raw_fingerprint.trim()), Utc::now());
            Ok(document(StatusCode::CREATED, json!({ "data": body })))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/machines/{id}",
    tag = "keygen",
    operation_id = "keygen_machine",
    summary = "A machine, by its id or its fingerprint",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The machine's id or fingerprint")),
    responses((status = 200, description = "{data: machine}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn show(
    State(state): State<AppState>,
    PathParams(raw_account, raw_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let found = find(&state, &tenant_id, &credential?, &raw_id).await?;
            let body = resources::machine(&found.license, &found.device, found.fingerprint.as_deref(), Utc::now());
            Ok(document(StatusCode::OK, json!({ "data": body })))
        }
        .await,
    )
}

#[utoipa::path(
    delete,
    path = "/keygen/{account}/v1/machines/{id}",
    tag = "keygen",
    operation_id = "keygen_deactivate",
    summary = "Deactivate a machine: free its seat (204)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The machine's id or fingerprint")),
    responses((status = 204, description = "Deactivated"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn deactivate(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, raw_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let credential = credential?;
            let found = find(&state, &tenant_id, &credential, &raw_id).await?;
            let call = keyledger_http::dialect::client_call(&context, credential.admin());
            state.client.deactivate(&call, &found.license, &found.machine).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/machines/{id}/actions/ping",
    tag = "keygen",
    operation_id = "keygen_ping_machine",
    summary = "A machine's heartbeat",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The machine's id or fingerprint")),
    responses((status = 200, description = "{data: machine}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}; HEARTBEAT_DEAD", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn heartbeat(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, raw_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let credential = credential?;
            let found = find(&state, &tenant_id, &credential, &raw_id).await?;
            let call = keyledger_http::dialect::client_call(&context, credential.admin());
            let checked =
                state.client.check(&call, &found.license, &found.machine, Wants::default(), Beat::Heartbeat).await?;
            let license = match checked {
                Ok(checked) => checked.license,
                Err(LicenseError::HeartbeatDead) => {
                    return Err(ApiError::bad_request("HEARTBEAT_DEAD", "machine heartbeat is dead")
                        .with_status(StatusCode::UNPROCESSABLE_ENTITY))
                }
                Err(reason) => return Err(ApiError::refused(reason)),
            };
            let device = license.device(&found.machine.hash).cloned().unwrap_or(found.device);
            let body = resources::machine(&license, &device, found.fingerprint.as_deref(), Utc::now());
            Ok(document(StatusCode::OK, json!({ "data": body })))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/licenses/{id}/machines",
    tag = "keygen",
    operation_id = "keygen_license_machines",
    summary = "A license's machines (at most 100; `limit` and `page[size]` may ask for fewer)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: [machine], meta: {count}}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("license" = []), ("bearer" = []))
)]
async fn license_machines(
    State(state): State<AppState>,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let Query(query) = query.map_err(|e| ApiError::bad_request("PARAMETER_INVALID", e.body_text()))?;
            let mut limit = 100;
            for name in ["limit", "page[size]"] {
                if let Some(raw) = query.get(name) {
                    limit = raw
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| bad_field(&format!("?{name}"), format!("{name} must be 1 to 100")))?;
                }
            }
            let license = license_by_id(&state, &tenant_id, &credential?, &license_id).await?;
            let fingerprints = state.fingerprints.of_license(&license.id).await.map_err(ApiError::internal)?;
            let mut data = resources::machines(&license, &fingerprints, Utc::now());
            data.truncate(limit);
            let count = license.devices.len();
            Ok(document(StatusCode::OK, json!({ "data": data, "meta": { "count": count } })))
        }
        .await,
    )
}
