//! A license's devices: listed by whoever may read the license; registered
//! without the client, deactivated one by one or all at once, blocked and
//! unblocked by tenant admins and the operator. Each change is an event of
//! the license.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use keyledger_domain::{Device, License, LicenseCommand};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::licenses::{administrable_license, execute_as, parse_machine, readable_license};
use crate::native::wire::{DeviceRecord, DevicesResponse, RegisterDeviceRequest};
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, PathParams, RequestContext};
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(list_devices, register_device, deactivate_all_devices))
        .add(routes!(deactivate_device))
        .add(routes!(block_device))
        .add(routes!(unblock_device))
}

fn parse_device_id(raw: &str) -> ApiResult<keyledger_domain::DeviceId> {
    keyledger_domain::DeviceId::parse(raw)
        .map_err(|_| ApiError::field("deviceId", "deviceId must be a UUID (a device's id from the devices list)"))
}

fn device_not_found() -> ApiError {
    ApiError::not_found("No device with this id on this license").with_code("device_not_found")
}

/// The device `raw_id` names on `license`, with whether it holds a seat.
fn find_device<'a>(license: &'a License, raw_id: &str) -> ApiResult<(&'a Device, bool)> {
    let id = parse_device_id(raw_id)?;
    license.device_by_id(&id).ok_or_else(device_not_found)
}

/// The record of `device_id` on the license as the command left it.
fn record(license: &License, device_id: &str) -> ApiResult<Json<DeviceRecord>> {
    let (device, active) = license.device_by_id(device_id).ok_or_else(device_not_found)?;
    Ok(Json(DeviceRecord::new(license, device, active)))
}

#[utoipa::path(
    get,
    path = "/{license_id}/devices",
    tag = "devices",
    summary = "A license's devices: those holding seats, then past ones (owner, tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")),
    responses((status = 200, description = "The devices", body = DevicesResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<DevicesResponse>> {
    let license = readable_license(&state, &caller, &raw_id).await?;
    Ok(Json(DevicesResponse::new(&license)))
}

/// Seed 003's register-device: an administrator takes a seat for a machine
/// (its `LicenseActivated` names the administrator's key as the actor).
/// Registering a machine that holds a seat already answers its record.
#[utoipa::path(
    post,
    path = "/{license_id}/devices",
    tag = "devices",
    summary = "Register a device on a license without the client (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")), request_body = RegisterDeviceRequest,
    responses((status = 200, description = "The device", body = DeviceRecord), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn register_device(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<RegisterDeviceRequest>,
) -> ApiResult<Json<DeviceRecord>> {
    let license = administrable_license(&state, &caller, &raw_id).await?;
    let machine = state.client.machine(parse_machine(request.machine_id.as_deref())?);
    let activation = keyledger_app::client::Activation {
        machine_name: request.machine_name.as_deref(),
        app_version: request.app_version.as_deref(),
    };
    let call = keyledger_http::dialect::client_call(&context, Some(&caller));
    let license = state.client.register_device(&call, &license, &machine, activation).await?;
    let machine = machine.hash;
    record(&license, &keyledger_domain::device_id(&license.id, &machine))
}

#[utoipa::path(
    delete,
    path = "/{license_id}/devices",
    tag = "devices",
    summary = "Deactivate every device of a license (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)")),
    responses((status = 200, description = "How many devices gave their seats up", body = crate::native::schemas::DeactivatedAll), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn deactivate_all_devices(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<Value>> {
    let license = administrable_license(&state, &caller, &raw_id).await?;
    let at = Utc::now();
    let license =
        execute_as(&state, &context, Some(&caller), &license, LicenseCommand::DeactivateAllDevices { at }).await?;
    // Counted on the license as the command left it (it may have held
    // more devices than the read model this request started from): each
    // release is stamped with the command's instant.
    let released = license.past_devices.iter().filter(|device| device.released_at == Some(at)).count();
    Ok(Json(json!({ "success": true, "error": null, "deactivated": released })))
}

#[utoipa::path(
    delete,
    path = "/{license_id}/devices/{device_id}",
    tag = "devices",
    summary = "Deactivate one device: it gives its seat up (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)"), ("device_id" = String, Path, description = "The device id (a UUID)")),
    responses((status = 200, description = "The device now", body = DeviceRecord), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn deactivate_device(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParams(raw_id, raw_device): PathParams,
) -> ApiResult<Json<DeviceRecord>> {
    let license = administrable_license(&state, &caller, &raw_id).await?;
    let (device, active) = find_device(&license, &raw_device)?;
    let device_id = device.id(&license.id);
    if !active {
        return record(&license, &device_id); // released already
    }
    // An administrator's deactivation is not held to the transfer limit.
    let command = LicenseCommand::DeactivateLicense {
        machine: device.machine.clone(),
        enforce_transfer_limit: false,
        at: Utc::now(),
    };
    let license = execute_as(&state, &context, Some(&caller), &license, command).await?;
    record(&license, &device_id)
}

/// Which way a block request goes.
#[derive(Clone, Copy)]
enum Blocking {
    Block,
    Unblock,
}

async fn set_blocked(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    (raw_id, raw_device): (&str, &str),
    blocking: Blocking,
) -> ApiResult<Json<DeviceRecord>> {
    let license = administrable_license(state, caller, raw_id).await?;
    let (device, _) = find_device(&license, raw_device)?;
    let (device_id, machine, at) = (device.id(&license.id), device.machine.clone(), Utc::now());
    let command = match blocking {
        Blocking::Block => LicenseCommand::BlockDevice { machine, at },
        Blocking::Unblock => LicenseCommand::UnblockDevice { machine, at },
    };
    let license = execute_as(state, context, Some(caller), &license, command).await?;
    record(&license, &device_id)
}

/// A blocked device can't activate, validate or heartbeat the license
/// (`device_blocked`, 403; validate answers `isValid: false`); a seat it
/// holds is released. Blocking a blocked device changes nothing.
#[utoipa::path(
    post,
    path = "/{license_id}/devices/{device_id}/block",
    tag = "devices",
    summary = "Block a device on a license (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)"), ("device_id" = String, Path, description = "The device id (a UUID)")),
    responses((status = 200, description = "The device now", body = DeviceRecord), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn block_device(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParams(raw_id, raw_device): PathParams,
) -> ApiResult<Json<DeviceRecord>> {
    set_blocked(&state, &context, &caller, (&raw_id, &raw_device), Blocking::Block).await
}

/// The device may activate again; it holds no seat until it does.
#[utoipa::path(
    post,
    path = "/{license_id}/devices/{device_id}/unblock",
    tag = "devices",
    summary = "Unblock a device on a license (tenant admin, operator)",
    params(("license_id" = String, Path, description = "The license id (a UUID)"), ("device_id" = String, Path, description = "The device id (a UUID)")),
    responses((status = 200, description = "The device now", body = DeviceRecord), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn unblock_device(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParams(raw_id, raw_device): PathParams,
) -> ApiResult<Json<DeviceRecord>> {
    set_blocked(&state, &context, &caller, (&raw_id, &raw_device), Blocking::Unblock).await
}
