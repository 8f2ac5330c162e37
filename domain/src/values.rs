//! Small value types of a license: status, type and seats, with seed 000's
//! integer encodings.

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

/// Seed 000's status integers; they are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr, Default)]
#[repr(u8)]
pub enum LicenseStatus {
    #[default]
    Generated = 0,
    Activated = 1,
    Expired = 2,
    Revoked = 3,
    Suspended = 4,
}

/// Seed 000's license type integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr, Default)]
#[repr(u8)]
pub enum LicenseType {
    Trial = 0,
    #[default]
    Standard = 1,
    Professional = 2,
    Enterprise = 3,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("licenseType must be 0 (Trial), 1 (Standard), 2 (Professional) or 3 (Enterprise)")]
    LicenseType,
    #[error("maxActivations must be between 1 and {max}", max = Seats::MAX)]
    Seats,
}

impl LicenseType {
    pub fn from_code(code: i64) -> Result<Self, ValueError> {
        match code {
            0 => Ok(Self::Trial),
            1 => Ok(Self::Standard),
            2 => Ok(Self::Professional),
            3 => Ok(Self::Enterprise),
            _ => Err(ValueError::LicenseType),
        }
    }
}

/// How many machines may hold the license at once (`maxActivations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seats(u32);

impl Seats {
    pub const MAX: u32 = 100_000;
    /// Seed 000 binds a license to one machine.
    pub const ONE: Seats = Seats(1);

    pub fn new(count: i64) -> Result<Self, ValueError> {
        if (1..=i64::from(Self::MAX)).contains(&count) {
            Ok(Self(count as u32))
        } else {
            Err(ValueError::Seats)
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Seats {
    fn default() -> Self {
        Self::ONE
    }
}
