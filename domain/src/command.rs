//! What callers ask of a license. Every command carries the instant it is
//! issued at, because the domain never reads a clock.

use chrono::{DateTime, Duration, Utc};

use crate::{
    AnomalyEvidence, AnomalyKind, AutoSuspend, CustomerId, DeviceDetails, LicenseId, LicenseKey, LicenseType,
    MachineHash, MachineName, OwnerId, Policy, ProductId, Seats, TenantId,
};

#[derive(Debug, Clone, PartialEq)]
pub enum LicenseCommand {
    GenerateLicense {
        license_id: LicenseId,
        tenant_id: TenantId,
        owner_id: OwnerId,
        license_key: LicenseKey,
        license_type: LicenseType,
        max_activations: Seats,
        max_connections: Option<u32>,
        /// None: perpetual, or (with `expires_after_activation_secs`)
        /// fixed at the first activation.
        expires_at: Option<DateTime<Utc>>,
        expires_after_activation_secs: Option<i64>,
        product_id: Option<ProductId>,
        features: Vec<String>,
        customer_id: Option<CustomerId>,
        number: Option<i64>,
        policy: Policy,
        at: DateTime<Utc>,
    },
    /// `device_number` is the number a device new to the license gets; a
    /// device that held a seat before keeps its own.
    ActivateLicense {
        machine: MachineHash,
        machine_name: MachineName,
        details: DeviceDetails,
        device_number: Option<i64>,
        at: DateTime<Utc>,
    },
    /// `enforce_transfer_limit` for the client's own deactivation; an
    /// administrator's is never refused (but counts).
    DeactivateLicense {
        machine: MachineHash,
        enforce_transfer_limit: bool,
        at: DateTime<Utc>,
    },
    /// The heartbeat sweep: every device dead at `at` gives its seat up.
    CullDeadDevices {
        at: DateTime<Utc>,
    },
    /// A dead device called again under a `revive` policy: it is alive
    /// again, taking a seat if its seat was freed.
    ReviveDevice {
        machine: MachineHash,
        details: DeviceDetails,
        at: DateTime<Utc>,
    },
    /// Seed 002's deactivate without a device: every device gives its
    /// seat up, one `LicenseDeactivated` each.
    DeactivateAllDevices {
        at: DateTime<Utc>,
    },
    /// An administrator blocks a machine: it can't activate, validate or
    /// heartbeat the license; a seat it holds is released.
    BlockDevice {
        machine: MachineHash,
        at: DateTime<Utc>,
    },
    UnblockDevice {
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
        policy: Option<Policy>,
        /// `Some(None)` takes the customer off the license.
        customer_id: Option<Option<CustomerId>>,
        at: DateTime<Utc>,
    },
    /// Counted by the API: `calls` in the window starting at
    /// `window_started_at` passed the device's `allowance`, the last of
    /// `windows` consecutive windows over it. Reported once per device and
    /// window; a repeat records nothing.
    ReportCallRate {
        machine: MachineHash,
        calls: u32,
        allowance: u32,
        window_started_at: DateTime<Utc>,
        window_secs: u32,
        windows: u32,
        at: DateTime<Utc>,
    },
    /// The detector's finding. Records nothing while an anomaly of the
    /// same kind is open on the license (the same episode), nor for a
    /// trigger at or before the last recorded one of its kind (the log
    /// read again); with
    /// `suspend`, the license is suspended in the same append, with the
    /// reason `anomaly: <kind>`.
    RecordAnomaly {
        anomaly_id: String,
        kind: AnomalyKind,
        trigger_sequence: i64,
        evidence: AnomalyEvidence,
        /// Suspend the license too, unless a detector suspended it less
        /// than `cooldown_secs` before `at`.
        suspend: Option<AutoSuspend>,
        at: DateTime<Utc>,
    },
    ResolveAnomaly {
        anomaly_id: String,
        note: Option<String>,
        at: DateTime<Utc>,
    },
    /// Deletes the license: it takes no more commands and is hidden from
    /// every list, search, count and client call; its history stays.
    DeleteLicense {
        at: DateTime<Utc>,
    },
    /// Issues an offline file of the license (or of one of its machines,
    /// which must hold a seat) that lasts `ttl_secs`: refused unless the
    /// license may be used now.
    CheckOut {
        machine: Option<MachineHash>,
        ttl_secs: u32,
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
            Self::DeactivateAllDevices { .. } => "DeactivateAllDevices",
            Self::CullDeadDevices { .. } => "CullDeadDevices",
            Self::ReviveDevice { .. } => "ReviveDevice",
            Self::BlockDevice { .. } => "BlockDevice",
            Self::UnblockDevice { .. } => "UnblockDevice",
            Self::RevokeLicense { .. } => "RevokeLicense",
            Self::SuspendLicense { .. } => "SuspendLicense",
            Self::ReinstateLicense { .. } => "ReinstateLicense",
            Self::ExpireLicense { .. } => "ExpireLicense",
            Self::RecordHeartbeat { .. } => "RecordHeartbeat",
            Self::EditLicense { .. } => "EditLicense",
            Self::ReportCallRate { .. } => "ReportCallRate",
            Self::RecordAnomaly { .. } => "RecordAnomaly",
            Self::ResolveAnomaly { .. } => "ResolveAnomaly",
            Self::DeleteLicense { .. } => "DeleteLicense",
            Self::CheckOut { .. } => "CheckOut",
        }
    }
}
