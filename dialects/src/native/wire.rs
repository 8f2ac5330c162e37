//! Request and response bodies in seed 000's shapes (camelCase JSON).

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_domain::{Device, License, LicenseStatus, Policy, Resurrection};
use serde::{Deserialize, Deserializer, Serialize};

/// Seed 000 writes instants as `2026-04-22T10:00:00Z`.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Integer fields are read as `i64` and range-checked by the value types,
/// so an out-of-range number gets our message rather than serde's.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    pub license_type: Option<i64>,
    /// 1 to 36,500; 365 when no validity is given.
    pub validity_days: Option<i64>,
    /// A validity down to minutes (seed 002's ten-minute trial), instead
    /// of `validityDays`.
    pub validity_minutes: Option<i64>,
    /// No expiry at all (seed 003's perpetual licenses).
    pub perpetual: Option<bool>,
    /// `creation` (default) or `firstActivation`: when the validity starts.
    pub validity_from: Option<String>,
    pub max_connections: Option<i64>,
    pub max_activations: Option<i64>,
    /// The product the license is for (its policy is where the license's
    /// starts); none for the tenant's default product.
    pub product_id: Option<String>,
    /// Feature codes of the license's own, beside its product's.
    pub features: Option<Vec<String>>,
    /// The customer it is sold to (a customer id of the tenant).
    pub customer_id: Option<String>,
    /// The license's policy; the default (no heartbeats, transfer limit,
    /// overage or user cap) when left out.
    pub policy: Option<PolicyFields>,
}

/// A license's policy fields, the `policy` object of generate and edit.
/// In an edit, a field left out keeps its value and `null` removes it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct PolicyFields {
    /// A device with no validate or heartbeat within this many seconds
    /// (2 to 31,622,400) is dead and its seat freed. Off by default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub heartbeat_duration_secs: Option<Option<i64>>,
    /// `none` (default): a dead device is answered `heartbeat_dead` and
    /// must activate again; `revive`: its next call takes a seat again.
    pub resurrection: Option<String>,
    /// At most `count` client deactivations every `periodSecs`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TransferLimitFields>)]
    pub transfer_limit: Option<Option<TransferLimitFields>>,
    /// Activations beyond the seats: `none` (default), `1.25`, `1.5`, `2`.
    pub overage: Option<String>,
    /// Seed 003's user cap, recorded and reported.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub max_users: Option<Option<i64>>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct TransferLimitFields {
    pub count: Option<i64>,
    pub period_secs: Option<i64>,
}

/// A license's policy as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResponse {
    pub heartbeat_duration_secs: Option<u32>,
    pub resurrection: &'static str,
    pub transfer_limit: Option<TransferLimitResponse>,
    pub overage: &'static str,
    pub max_users: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferLimitResponse {
    pub count: u32,
    pub period_secs: u32,
}

impl PolicyResponse {
    pub fn new(policy: &Policy) -> Self {
        Self {
            heartbeat_duration_secs: policy.heartbeat_secs,
            resurrection: match policy.resurrection {
                Resurrection::None => "none",
                Resurrection::Revive => "revive",
            },
            transfer_limit: policy
                .transfer_limit
                .map(|limit| TransferLimitResponse { count: limit.count, period_secs: limit.period_secs }),
            overage: policy.overage.as_str(),
            max_users: policy.max_users,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct SuspendRequest {
    pub reason: Option<String>,
}

/// An administrator's edit. `maxConnections: null` removes the cap, while
/// leaving the field out keeps it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct EditRequest {
    /// RFC 3339, or a plain date (midnight UTC).
    #[serde(default, deserialize_with = "keyledger_http::dates::optional")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expired_at: Option<DateTime<Utc>>,
    pub max_activations: Option<i64>,
    /// `null` removes the cap; leaving it out keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub max_connections: Option<Option<i64>>,
    /// Policy fields to change; those left out keep their values.
    pub policy: Option<PolicyFields>,
    /// The customer it is sold to; `null` takes the customer off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<Option<String>>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
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
    /// Null for a perpetual license, and for one whose validity starts at
    /// its first activation until then.
    pub expired_at: Option<String>,
    /// The validity, in seconds, that the first activation will start.
    pub expires_after_activation_secs: Option<i64>,
    pub activated_at: Option<String>,
    pub machine_name: Option<String>,
    pub max_connections: Option<u32>,
    pub is_activated: bool,
    pub max_activations: u32,
    pub activations: usize,
    /// The devices holding seats.
    pub devices: Vec<DeviceRecord>,
    pub policy: PolicyResponse,
    /// Its per-tenant serial number (null on licenses generated before
    /// numbers).
    pub number: Option<i64>,
    /// Its product; null for the tenant's default product.
    pub product_id: Option<String>,
    /// Feature codes of its own, beside its product's.
    pub features: Vec<String>,
    /// The customer it is sold to; null when none is named.
    pub customer_id: Option<String>,
}

impl LicenseResponse {
    pub fn new(license: &License, now: DateTime<Utc>) -> Self {
        let status = license.status_at(now);
        Self {
            id: license.id.to_string(),
            license_key: license.license_key.as_ref().map(ToString::to_string).unwrap_or_default(),
            status,
            license_type: license.license_type,
            created_at: license.created_at.map(instant),
            expired_at: license.expires_at.map(instant),
            expires_after_activation_secs: license.expires_after_activation_secs,
            activated_at: license.activated_at.map(instant),
            machine_name: license.devices.first().map(|d| d.machine_name.as_str().to_owned()),
            max_connections: license.max_connections,
            is_activated: status == LicenseStatus::Activated,
            max_activations: license.max_activations.get(),
            activations: license.devices.len(),
            devices: license.devices.iter().map(|device| DeviceRecord::new(license, device, true)).collect(),
            policy: PolicyResponse::new(&license.policy),
            number: license.number,
            product_id: license.product_id.clone().map(String::from),
            features: license.features.to_vec(),
            customer_id: license.customer_id.clone().map(String::from),
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
    /// Its per-tenant serial number (null on devices activated before
    /// numbers).
    pub number: Option<i64>,
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
    /// A past device whose seat was freed because its heartbeats stopped.
    pub culled: bool,
    /// When a past device gave its seat up.
    pub released_at: Option<String>,
}

impl DeviceRecord {
    pub fn new(license: &License, device: &Device, active: bool) -> Self {
        Self {
            device_id: device.id(&license.id).to_string(),
            number: device.number,
            machine_name: device.machine_name.as_str().to_owned(),
            app_version: device.details.app_version.clone(),
            ip: device.details.ip.as_ref().map(ToString::to_string),
            user_agent: device.details.user_agent.clone(),
            activated_at: instant(device.activated_at),
            last_seen_at: instant(device.last_heartbeat_at),
            last_heartbeat_at: instant(device.last_heartbeat_at),
            active,
            blocked: license.is_blocked(&device.machine),
            culled: device.culled,
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
            license_id: license.id.to_string(),
            max_activations: license.max_activations.get(),
            devices: active.chain(past).collect(),
        }
    }
}

/// A device registered by an administrator, without the client.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDeviceRequest {
    /// The machine id the client will send (hashed at rest).
    pub machine_id: Option<String>,
    pub machine_name: Option<String>,
    pub app_version: Option<String>,
}
