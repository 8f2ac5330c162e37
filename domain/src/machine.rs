//! Machine identifiers: what a client sends, and the keyed hash that is
//! the only form ever stored.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const MAX_MACHINE_ID_LEN: usize = 512;
const MAX_MACHINE_NAME_LEN: usize = 200;
const DEFAULT_MACHINE_NAME: &str = "Unknown Machine";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineIdError {
    #[error("machineId is required")]
    Missing,
    #[error("machineId must be at most 512 characters")]
    TooLong,
    #[error("machineId must not contain control characters")]
    ControlCharacters,
    #[error("machineName must be at most 200 characters")]
    NameTooLong,
    #[error("machineName {0}")]
    BadName(#[from] crate::TextError),
}

/// A raw machine fingerprint as the client sent it. Deliberately not
/// serialisable: it must become a [`MachineHash`] before it goes anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId(String);

impl MachineId {
    pub fn parse(raw: &str) -> Result<Self, MachineIdError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(MachineIdError::Missing);
        }
        if trimmed.chars().count() > MAX_MACHINE_ID_LEN {
            return Err(MachineIdError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(MachineIdError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// HMAC-SHA256 under a server secret. A plain SHA-256 of a hardware
    /// serial can be reversed by hashing candidate serials; the key stops
    /// that for anyone who reads the log without the secret.
    pub fn hash(&self, secret: &[u8]) -> MachineHash {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(self.0.as_bytes());
        MachineHash(hex::encode(mac.finalize().into_bytes()))
    }
}

/// The keyed hash of a machine id, as hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MachineHash(String);

impl MachineHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For tests and fixtures that need a hash without a secret.
    pub fn from_hex(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }
}

/// The human-readable name shown in license listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MachineName(String);

impl MachineName {
    /// An absent or blank name becomes seed 000's `Unknown Machine`.
    pub fn parse(raw: Option<&str>) -> Result<Self, MachineIdError> {
        let trimmed = raw.map(str::trim).unwrap_or_default();
        if trimmed.is_empty() {
            return Ok(Self(DEFAULT_MACHINE_NAME.to_owned()));
        }
        if trimmed.chars().count() > MAX_MACHINE_NAME_LEN {
            return Err(MachineIdError::NameTooLong);
        }
        crate::check_display_text(trimmed)?;
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_machine_hashes_the_same_under_one_secret() {
        let id = MachineId::parse("machine-fingerprint-123").unwrap();
        assert_eq!(id.hash(b"secret"), id.hash(b"secret"));
        assert_eq!(id.hash(b"secret").as_str().len(), 64);
    }

    #[test]
    fn a_different_secret_gives_a_different_hash() {
        let id = MachineId::parse("machine-fingerprint-123").unwrap();
        assert_ne!(id.hash(b"one"), id.hash(b"two"));
    }

    #[test]
    fn the_hash_is_not_the_raw_id() {
        let id = MachineId::parse("machine-fingerprint-123").unwrap();
        assert!(!id.hash(b"k").as_str().contains("machine"));
    }

    #[test]
    fn blank_or_oversized_ids_are_refused() {
        assert_eq!(MachineId::parse("  "), Err(MachineIdError::Missing));
        assert_eq!(MachineId::parse(&"x".repeat(513)), Err(MachineIdError::TooLong));
        assert_eq!(MachineId::parse("a\u{0}b"), Err(MachineIdError::ControlCharacters));
    }

    #[test]
    fn a_missing_name_defaults_to_unknown_machine() {
        assert_eq!(MachineName::parse(None).unwrap().as_str(), "Unknown Machine");
        assert_eq!(MachineName::parse(Some(" ")).unwrap().as_str(), "Unknown Machine");
        assert_eq!(MachineName::parse(Some("prod-01")).unwrap().as_str(), "prod-01");
        assert!(MachineName::parse(Some(&"n".repeat(201))).is_err());
    }

    #[test]
    fn a_name_that_would_lie_on_a_dashboard_is_refused() {
        assert!(matches!(MachineName::parse(Some("prod\u{202E}10-dorp")), Err(MachineIdError::BadName(_))));
        assert!(matches!(MachineName::parse(Some("a\u{1b}[31m")), Err(MachineIdError::BadName(_))));
    }
}
