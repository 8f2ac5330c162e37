//! What callers ask of a license. Every command carries the instant it is
//! issued at, because the domain never reads a clock.

use chrono::{DateTime, Duration, Utc};

use crate::{LicenseKey, LicenseType, MachineHash, MachineName, Seats};

#[derive(Debug, Clone, PartialEq)]
pub enum LicenseCommand {
    GenerateLicense {
        license_id: String,
        tenant_id: String,
        owner_id: String,
        license_key: LicenseKey,
        license_type: LicenseType,
        max_activations: Seats,
        max_connections: Option<u32>,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ActivateLicense {
        machine: MachineHash,
        machine_name: MachineName,
        at: DateTime<Utc>,
    },
    DeactivateLicense {
        machine: MachineHash,
        at: DateTime<Utc>,
    },
    /// Seed 000's revoke: release every machine and go back to Generated so
    /// the key can be activated elsewhere.
    RevokeLicense {
        at: DateTime<Utc>,
    },
    SuspendLicense {
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    ReinstateLicense {
        at: DateTime<Utc>,
    },
    ExpireLicense {
        at: DateTime<Utc>,
    },
    /// `min_interval` bounds how often one device's heartbeat reaches the
    /// log; more frequent beats are accepted and produce no event.
    RecordHeartbeat {
        machine: MachineHash,
        min_interval: Duration,
        at: DateTime<Utc>,
    },
    /// An administrator's change of limits. `None` leaves a field as it is;
    /// `max_connections: Some(None)` removes the cap.
    EditLicense {
        expires_at: Option<DateTime<Utc>>,
        max_activations: Option<Seats>,
        max_connections: Option<Option<u32>>,
        at: DateTime<Utc>,
    },
}

impl LicenseCommand {
    /// The command's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::GenerateLicense { .. } => "GenerateLicense",
            Self::ActivateLicense { .. } => "ActivateLicense",
            Self::DeactivateLicense { .. } => "DeactivateLicense",
            Self::RevokeLicense { .. } => "RevokeLicense",
            Self::SuspendLicense { .. } => "SuspendLicense",
            Self::ReinstateLicense { .. } => "ReinstateLicense",
            Self::ExpireLicense { .. } => "ExpireLicense",
            Self::RecordHeartbeat { .. } => "RecordHeartbeat",
            Self::EditLicense { .. } => "EditLicense",
        }
    }
}
