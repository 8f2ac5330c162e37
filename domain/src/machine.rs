//! Machine identifiers: what a client sends, and the keyed hash that is
//! the only form ever stored.

use std::borrow::Cow;

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
        MachineHash(mac.finalize().into_bytes().into())
    }
}

/// The keyed hash of a machine id: 32 bytes, written as 64 lower-case hex
/// characters wherever it is stored or shown. Kept as bytes, not as its
/// hex text: every device of every license in each process's validation
/// view holds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineHash([u8; 32]);

impl MachineHash {
    /// Its 64 hex characters.
    pub fn hex(&self) -> HexHash {
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).expect("64 characters for 32 bytes");
        HexHash(text)
    }

    /// Parses 64 hex characters (either case).
    pub fn parse_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok().map(|()| Self(bytes))
    }

    /// For tests and fixtures that need a hash without a secret.
    pub fn from_hex(text: impl AsRef<str>) -> Self {
        Self::parse_hex(text.as_ref()).expect("a machine hash is 64 hex characters")
    }
}

/// A machine hash's hex text, on the stack.
#[derive(Clone, Copy)]
pub struct HexHash([u8; 64]);

impl HexHash {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex is ASCII")
    }
}

impl std::fmt::Display for MachineHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl Serialize for MachineHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex().as_str())
    }
}

impl<'de> Deserialize<'de> for MachineHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse_hex(&text).ok_or_else(|| serde::de::Error::custom("a machine hash is 64 hex characters"))
    }
}

/// The human-readable name shown in license listings. The default name
/// is shared rather than copied into every device that has no name of its
/// own (most of them), which a million devices notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MachineName(Cow<'static, str>);

impl MachineName {
    /// An absent or blank name becomes seed 000's `Unknown Machine`.
    pub fn parse(raw: Option<&str>) -> Result<Self, MachineIdError> {
        let trimmed = raw.map(str::trim).unwrap_or_default();
        if trimmed.is_empty() {
            return Ok(Self(Cow::Borrowed(DEFAULT_MACHINE_NAME)));
        }
        if trimmed.chars().count() > MAX_MACHINE_NAME_LEN {
            return Err(MachineIdError::NameTooLong);
        }
        crate::check_display_text(trimmed)?;
        Ok(Self::from_stored(trimmed))
    }

    /// A name as recorded in an event, already checked when it was.
    fn from_stored(name: &str) -> Self {
        if name == DEFAULT_MACHINE_NAME {
            Self(Cow::Borrowed(DEFAULT_MACHINE_NAME))
        } else {
            Self(Cow::Owned(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for MachineName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_stored(&Cow::<'de, str>::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_hash_reads_and_writes_as_the_hex_it_always_was() {
        let hash = MachineId::parse("m-1").unwrap().hash(b"secret");
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", hash.hex().as_str()));
        assert_eq!(serde_json::from_str::<MachineHash>(&json).unwrap(), hash);
        assert!(serde_json::from_str::<MachineHash>("\"not hex\"").is_err());
        assert_eq!(std::mem::size_of::<MachineHash>(), 32, "inline, no heap");
    }

    #[test]
    fn the_same_machine_hashes_the_same_under_one_secret() {
        let id = MachineId::parse("machine-fingerprint-123").unwrap();
        assert_eq!(id.hash(b"secret"), id.hash(b"secret"));
        assert_eq!(id.hash(b"secret").hex().as_str().len(), 64);
    }

    #[test]
    fn a_different_secret_gives_a_different_hash() {
        let id = MachineId::parse("machine-fingerprint-123").unwrap();
        assert_ne!(id.hash(b"one"), id.hash(b"two"));
    }

    #[test]
    fn the_hash_is_not_the_raw_id() {
        let id = MachineId::parse("machine-fingerprint-123").unwrap();
        assert!(!id.hash(b"k").hex().as_str().contains("machine"));
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
        let stored: MachineName = serde_json::from_str("\"Unknown Machine\"").unwrap();
        assert!(matches!(stored.0, Cow::Borrowed(_)), "the default name is shared, not copied");
        assert_eq!(serde_json::to_string(&stored).unwrap(), "\"Unknown Machine\"");
    }

    #[test]
    fn a_name_that_would_lie_on_a_dashboard_is_refused() {
        assert!(matches!(MachineName::parse(Some("prod\u{202E}10-dorp")), Err(MachineIdError::BadName(_))));
        assert!(matches!(MachineName::parse(Some("a\u{1b}[31m")), Err(MachineIdError::BadName(_))));
    }
}
