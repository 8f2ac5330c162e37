//! Devices: the machines a license has been activated on, each a record
//! of its license with a stable id, what the client said about itself at
//! activation, when it was last seen, and whether it is blocked.

use crate::DeviceId;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::text::check_display_text;
use crate::{MachineHash, MachineName};

/// Longest `appVersion` a client may report.
pub const MAX_APP_VERSION_LEN: usize = 64;
/// A user agent is kept to this many characters.
const MAX_USER_AGENT_LEN: usize = 256;
/// Released devices a license keeps in its state; older ones are still in
/// its history. Bounds the memory a license that moves machines all day
/// can take.
pub const MAX_PAST_DEVICES: usize = 50;

/// A machine holding (or, among a license's past devices, once holding) a
/// seat of a license.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub machine: MachineHash,
    pub machine_name: MachineName,
    pub activated_at: DateTime<Utc>,
    /// The last heartbeat or validate written to the log: the device's
    /// last-seen time, to within the heartbeat interval.
    pub last_heartbeat_at: DateTime<Utc>,
    /// The last window in which the device's calls over its allowance
    /// were reported, so each window is reported once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_rate_reported_for: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "DeviceDetails::is_empty")]
    pub details: DeviceDetails,
    /// When it gave its seat up; only past devices have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
    /// Its per-tenant serial number, beside [`Device::id`]; None on devices
    /// activated before numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// A past device whose seat was freed because its heartbeats stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub culled: bool,
}

impl Device {
    /// The device's id on `license_id`: a UUID derived from the license
    /// and the machine's keyed hash, so it is the same on every replay and
    /// every reactivation, exists for devices activated before ids did,
    /// and tells nothing about the machine id.
    pub fn id(&self, license_id: &str) -> DeviceId {
        device_id(license_id, &self.machine)
    }
}

/// See [`Device::id`]. Formatted as an RFC 9562 version 8 (custom) UUID.
pub fn device_id(license_id: &str, machine: &MachineHash) -> DeviceId {
    let digest = Sha256::new()
        .chain_update(b"keyledger device\0")
        .chain_update(license_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(machine.hex().as_str().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex = hex::encode(bytes);
    DeviceId::trusted(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

/// What a device reported about itself when it was activated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The client address the request came from (after the trusted-proxy
    /// rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<ClientAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl DeviceDetails {
    pub fn is_empty(&self) -> bool {
        self.app_version.is_none() && self.ip.is_none() && self.user_agent.is_none()
    }

    /// A user agent as kept: at most [`MAX_USER_AGENT_LEN`] characters,
    /// control characters dropped (it is shown on dashboards and is not
    /// the client's to refuse).
    pub fn user_agent(raw: &str) -> Option<String> {
        let kept: String = raw.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT_LEN).collect();
        let kept = kept.trim();
        (!kept.is_empty()).then(|| kept.to_owned())
    }
}

/// A client address as recorded: the address itself when the text is one
/// (as it always is from the server), inline rather than a string on the
/// heap; any other text as it was. It reads and writes as the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddress {
    Ip(IpAddr),
    Text(Box<str>),
}

impl ClientAddress {
    pub fn from_text(text: &str) -> Self {
        text.parse().map_or_else(|_| Self::Text(text.into()), Self::Ip)
    }
}

impl std::fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl Serialize for ClientAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClientAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_text(&std::borrow::Cow::<'de, str>::deserialize(deserializer)?))
    }
}

/// Why an `appVersion` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppVersionError {
    #[error("appVersion must be at most {MAX_APP_VERSION_LEN} characters")]
    TooLong,
    #[error("appVersion {0}")]
    BadText(#[from] crate::TextError),
}

/// A client's `appVersion`: free text (most are semver), blank as none.
pub fn parse_app_version(raw: Option<&str>) -> Result<Option<String>, AppVersionError> {
    let Some(trimmed) = raw.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if trimmed.chars().count() > MAX_APP_VERSION_LEN {
        return Err(AppVersionError::TooLong);
    }
    check_display_text(trimmed)?;
    Ok(Some(trimmed.to_owned()))
}

/// A machine an administrator blocked on a license.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockedMachine {
    pub machine: MachineHash,
    pub blocked_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MachineId;

    #[test]
    fn a_client_address_reads_and_writes_as_its_text() {
        for text in ["203.0.113.7", "2001:db8::1", "not an address"] {
            let json = format!("\"{text}\"");
            let address: ClientAddress = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&address).unwrap(), json);
        }
        assert!(matches!(ClientAddress::from_text("127.0.0.1"), ClientAddress::Ip(_)), "kept inline");
        assert_eq!(std::mem::size_of::<Option<ClientAddress>>(), std::mem::size_of::<String>());
    }

    #[test]
    fn a_device_id_is_a_stable_uuid_of_its_license_and_machine() {
        let machine = MachineId::parse("fingerprint-1").unwrap().hash(b"secret");
        let other = MachineId::parse("fingerprint-2").unwrap().hash(b"secret");
        let id = device_id("license-a", &machine);
        assert_eq!(id, device_id("license-a", &machine));
        assert_ne!(id, device_id("license-b", &machine));
        assert_ne!(id, device_id("license-a", &other));
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn app_versions_are_short_display_text() {
        assert_eq!(parse_app_version(Some(" 1.2.3 ")).unwrap().as_deref(), Some("1.2.3"));
        assert_eq!(parse_app_version(Some("  ")).unwrap(), None);
        assert_eq!(parse_app_version(None).unwrap(), None);
        assert_eq!(parse_app_version(Some(&"1".repeat(65))), Err(AppVersionError::TooLong));
        assert!(matches!(parse_app_version(Some("1.0\u{202E}")), Err(AppVersionError::BadText(_))));
    }

    #[test]
    fn user_agents_are_cut_and_cleaned() {
        assert_eq!(DeviceDetails::user_agent("curl/8\u{7}").as_deref(), Some("curl/8"));
        assert_eq!(DeviceDetails::user_agent(&"a".repeat(300)).map(|ua| ua.len()), Some(256));
        assert_eq!(DeviceDetails::user_agent(" "), None);
    }
}
