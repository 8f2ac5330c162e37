//! Why a command or a validation was refused. The messages are shown to
//! clients, so they say what is wrong without internal detail.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("License not found")]
    NotFound,
    #[error("License already exists")]
    AlreadyExists,
    #[error("License has expired")]
    Expired,
    #[error("License has been revoked")]
    Revoked,
    #[error("License is suspended")]
    Suspended,
    #[error("License is not activated")]
    NotActivated,
    #[error("License is not activated on this machine")]
    MachineNotActivated,
    #[error("This device is blocked from using the license")]
    DeviceBlocked,
    #[error("This device's heartbeats stopped and its seat was freed; activate it again")]
    HeartbeatDead,
    #[error("Transfer limit exceeded: at most {count} deactivations every {period_secs} seconds")]
    TransferLimitReached { count: u32, period_secs: u32 },
    #[error("The license is not for this product")]
    ProductMismatch,
    #[error("The license does not carry the features {}", missing.join(", "))]
    FeatureMissing { missing: Vec<String> },
    #[error("License is already bound to a different machine; revoke it before activating on a new one")]
    BoundToAnotherMachine,
    #[error("Activation limit reached: all {max} seats are in use")]
    SeatLimitReached { max: u32 },
    #[error("License is not suspended")]
    NotSuspended,
    #[error("License does not expire until {expires_at}")]
    NotYetExpired { expires_at: String },
    #[error("maxActivations {requested} is below the {active} machines now active; deactivate machines first")]
    SeatsBelowActiveMachines { requested: u32, active: u32 },
    #[error("expiredAt must be after the license's creation time")]
    ExpiryBeforeCreation,
    #[error("The anomaly is not open on this license: it was resolved already, or never recorded")]
    AnomalyNotOpen,
}
