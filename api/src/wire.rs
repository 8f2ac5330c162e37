//! Request and response bodies in seed 000's shapes (camelCase JSON).

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_domain::{Device, License, LicenseStatus};
use serde::{Deserialize, Deserializer, Serialize};

/// Seed 000 writes instants as `2026-04-22T10:00:00Z`.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Integer fields are read as `i64` and range-checked by the value types,
/// so an out-of-range number gets our message rather than serde's.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    pub license_type: Option<i64>,
    pub validity_days: Option<i64>,
    pub max_connections: Option<i64>,
    pub max_activations: Option<i64>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspendRequest {
    pub reason: Option<String>,
}

/// An administrator's edit. `maxConnections: null` removes the cap, while
/// leaving the field out keeps it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditRequest {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expired_at: Option<DateTime<Utc>>,
    pub max_activations: Option<i64>,
    /// `null` removes the cap; leaving it out keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub max_connections: Option<Option<i64>>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Seed 000's FastrLicenseResponse, plus the seat fields of a multi-seat
/// license.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseResponse {
    pub id: String,
    pub license_key: String,
    /// 0 Generated, 1 Activated, 2 Expired, 3 Revoked, 4 Suspended.
    #[schema(value_type = i32)]
    pub status: LicenseStatus,
    /// 0 Trial, 1 Standard, 2 Professional, 3 Enterprise.
    #[schema(value_type = i32)]
    pub license_type: keyledger_domain::LicenseType,
    pub created_at: Option<String>,
    pub expired_at: Option<String>,
    pub activated_at: Option<String>,
    pub machine_name: Option<String>,
    pub max_connections: Option<u32>,
    pub is_activated: bool,
    pub max_activations: u32,
    pub activations: usize,
    /// The devices holding seats.
    pub devices: Vec<DeviceRecord>,
}

impl LicenseResponse {
    pub fn new(license: &License, now: DateTime<Utc>) -> Self {
        let status = license.status_at(now);
        Self {
            id: license.id.clone(),
            license_key: license.license_key.as_ref().map(ToString::to_string).unwrap_or_default(),
            status,
            license_type: license.license_type,
            created_at: license.created_at.map(instant),
            expired_at: license.expires_at.map(instant),
            activated_at: license.activated_at.map(instant),
            machine_name: license.devices.first().map(|d| d.machine_name.as_str().to_owned()),
            max_connections: license.max_connections,
            is_activated: status == LicenseStatus::Activated,
            max_activations: license.max_activations.get(),
            activations: license.devices.len(),
            devices: license.devices.iter().map(|device| DeviceRecord::new(license, device, true)).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageResponse {
    pub success: bool,
    pub error: Option<String>,
    pub message: String,
}

impl MessageResponse {
    pub fn ok(message: impl Into<String>) -> Self {
        Self { success: true, error: None, message: message.into() }
    }
}

/// A device of a license, holding a seat (`active`) or past.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    /// Stable: the same UUID whenever the machine is activated again on
    /// this license; tells nothing about the machine id.
    pub device_id: String,
    pub machine_name: String,
    pub app_version: Option<String>,
    /// The client address at activation.
    pub ip: Option<String>,
    /// The client's User-Agent at activation.
    pub user_agent: Option<String>,
    pub activated_at: String,
    /// The last validate or heartbeat written to the log (at most one per
    /// heartbeat interval is written).
    pub last_seen_at: String,
    /// The same as `lastSeenAt`, under its earlier name.
    pub last_heartbeat_at: String,
    pub active: bool,
    pub blocked: bool,
    /// When a past device gave its seat up.
    pub released_at: Option<String>,
}

impl DeviceRecord {
    pub fn new(license: &License, device: &Device, active: bool) -> Self {
        Self {
            device_id: device.id(&license.id),
            machine_name: device.machine_name.as_str().to_owned(),
            app_version: device.details.app_version.clone(),
            ip: device.details.ip.clone(),
            user_agent: device.details.user_agent.clone(),
            activated_at: instant(device.activated_at),
            last_seen_at: instant(device.last_heartbeat_at),
            last_heartbeat_at: instant(device.last_heartbeat_at),
            active,
            blocked: license.is_blocked(&device.machine),
            released_at: device.released_at.map(instant),
        }
    }
}

/// Every device of a license: those holding seats first, then past ones,
/// most recently released last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicesResponse {
    pub license_id: String,
    pub max_activations: u32,
    pub devices: Vec<DeviceRecord>,
}

impl DevicesResponse {
    pub fn new(license: &License) -> Self {
        let active = license.devices.iter().map(|device| DeviceRecord::new(license, device, true));
        let past = license.past_devices.iter().map(|device| DeviceRecord::new(license, device, false));
        Self {
            license_id: license.id.clone(),
            max_activations: license.max_activations.get(),
            devices: active.chain(past).collect(),
        }
    }
}

/// A device registered by an administrator, without the client.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDeviceRequest {
    /// The machine id the client will send (hashed at rest).
    pub machine_id: Option<String>,
    pub machine_name: Option<String>,
    pub app_version: Option<String>,
}
