//! What happened to a license. Events are facts in the past tense and never
//! change once written; a new shape gets a new `EVENT_VERSION` and an
//! upcaster for the old one.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{
    AnomalyEvidence, AnomalyKind, CustomerId, DeviceDetails, LicenseId, LicenseKey, LicenseType, MachineHash,
    MachineName, OwnerId, Policy, ProductId, Seats, TenantId,
};

/// The version every event is written with today.
pub const EVENT_VERSION: &str = "1.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LicenseEvent {
    LicenseGenerated {
        license_id: LicenseId,
        tenant_id: TenantId,
        owner_id: OwnerId,
        license_key: LicenseKey,
        license_type: LicenseType,
        max_activations: Seats,
        max_connections: Option<u32>,
        created_at: DateTime<Utc>,
        /// Absent (never, until an edit sets one) for a perpetual license
        /// and for one whose validity starts at its first activation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        /// A validity counted from the first activation, in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_after_activation_secs: Option<i64>,
        /// The product it was generated for; absent for the tenant's
        /// default product (and every license generated before products).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<ProductId>,
        /// Feature codes of its own, beside its product's.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
        /// The customer it was sold to; absent when none is named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_id: Option<CustomerId>,
        /// Its per-tenant serial number; absent on licenses generated
        /// before numbers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<i64>,
        /// Absent when the license has the default policy, as every
        /// license generated before policies had.
        #[serde(default, skip_serializing_if = "Policy::is_default")]
        policy: Policy,
    },
    LicenseActivated {
        machine: MachineHash,
        machine_name: MachineName,
        /// What the client reported about itself; absent from events
        /// written before devices kept details.
        #[serde(default, skip_serializing_if = "DeviceDetails::is_empty")]
        details: DeviceDetails,
        /// The device's per-tenant serial number; absent on activations
        /// from before numbers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_number: Option<i64>,
        activated_at: DateTime<Utc>,
    },
    LicenseDeactivated {
        machine: MachineHash,
        deactivated_at: DateTime<Utc>,
    },
    /// An administrator blocked the machine on this license;
    /// `released_seat` when it held a seat, which it gave up.
    DeviceBlocked {
        machine: MachineHash,
        released_seat: bool,
        blocked_at: DateTime<Utc>,
    },
    DeviceUnblocked {
        machine: MachineHash,
        unblocked_at: DateTime<Utc>,
    },
    /// The device's heartbeats stopped for longer than the policy allows:
    /// the system freed its seat.
    DeviceCulled {
        machine: MachineHash,
        last_seen_at: DateTime<Utc>,
        culled_at: DateTime<Utc>,
    },
    /// The license was reset: every machine released, back to Generated.
    LicenseRevoked {
        released_machines: Vec<MachineHash>,
        revoked_at: DateTime<Utc>,
    },
    LicenseSuspended {
        reason: Option<String>,
        suspended_at: DateTime<Utc>,
    },
    LicenseReinstated {
        reinstated_at: DateTime<Utc>,
    },
    LicenseExpired {
        expired_at: DateTime<Utc>,
    },
    HeartbeatRecorded {
        machine: MachineHash,
        recorded_at: DateTime<Utc>,
    },
    /// The resulting values of an administrator's edit, not a diff, so the
    /// event reads on its own.
    LicenseEdited {
        /// Absent when the license has no fixed expiry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        max_activations: Seats,
        max_connections: Option<u32>,
        /// The resulting policy; absent when it is the default.
        #[serde(default, skip_serializing_if = "Policy::is_default")]
        policy: Policy,
        /// The resulting customer; absent when none is named (as on
        /// every edit written before customers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_id: Option<CustomerId>,
        edited_at: DateTime<Utc>,
    },
    /// A device called validate or heartbeat more often than its
    /// allowance in `windows` consecutive windows, the last starting at
    /// `window_started_at`: written when the call over the allowance
    /// arrives in the window that makes the run long enough to matter,
    /// for the anomaly detector.
    LicenseCallRateExceeded {
        machine: MachineHash,
        /// Calls counted in the last window when the allowance was passed.
        calls: u32,
        allowance: u32,
        window_started_at: DateTime<Utc>,
        window_secs: u32,
        /// Consecutive windows over the allowance, ending with this one.
        /// Events written before runs were counted name one window.
        #[serde(default = "one_window")]
        windows: u32,
        observed_at: DateTime<Utc>,
    },
    /// The anomaly detector found an anomaly on this license.
    AnomalyDetected {
        anomaly_id: String,
        kind: AnomalyKind,
        /// The sequence of this license's event that passed the threshold.
        trigger_sequence: i64,
        evidence: AnomalyEvidence,
        detected_at: DateTime<Utc>,
    },
    /// An administrator reviewed the anomaly; a new finding of its kind
    /// starts a new episode.
    AnomalyResolved {
        anomaly_id: String,
        kind: AnomalyKind,
        note: Option<String>,
        resolved_at: DateTime<Utc>,
    },
    /// Deleted by an administrator: hidden from every list and client
    /// call, its devices' seats gone with it; the history stays.
    LicenseDeleted {
        deleted_at: DateTime<Utc>,
    },
    /// An offline file of the license, or of one of its machines, was
    /// issued; it is good until `expires_at`.
    LicenseCheckedOut {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        machine: Option<MachineHash>,
        ttl_secs: u32,
        expires_at: DateTime<Utc>,
        checked_out_at: DateTime<Utc>,
    },
}

impl DomainEvent for LicenseEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::LicenseGenerated { .. } => "LicenseGenerated",
            Self::LicenseActivated { .. } => "LicenseActivated",
            Self::LicenseDeactivated { .. } => "LicenseDeactivated",
            Self::LicenseRevoked { .. } => "LicenseRevoked",
            Self::DeviceBlocked { .. } => "DeviceBlocked",
            Self::DeviceUnblocked { .. } => "DeviceUnblocked",
            Self::DeviceCulled { .. } => "DeviceCulled",
            Self::LicenseSuspended { .. } => "LicenseSuspended",
            Self::LicenseReinstated { .. } => "LicenseReinstated",
            Self::LicenseExpired { .. } => "LicenseExpired",
            Self::HeartbeatRecorded { .. } => "HeartbeatRecorded",
            Self::LicenseEdited { .. } => "LicenseEdited",
            Self::LicenseCallRateExceeded { .. } => "LicenseCallRateExceeded",
            Self::AnomalyDetected { .. } => "AnomalyDetected",
            Self::AnomalyResolved { .. } => "AnomalyResolved",
            Self::LicenseDeleted { .. } => "LicenseDeleted",
            Self::LicenseCheckedOut { .. } => "LicenseCheckedOut",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// What an older `LicenseCallRateExceeded` without `windows` stood for.
fn one_window() -> u32 {
    1
}
