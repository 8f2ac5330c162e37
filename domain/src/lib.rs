//! The `License` aggregate and everything it is made of.
//!
//! This crate owns the rules of a license's life: which commands are accepted
//! in which state, which events they produce, and how events fold into state.
//! It is pure: no database, no HTTP, no clock and no randomness are read
//! here. Time arrives inside each command and randomness through an `Rng`
//! argument, so every rule is deterministic under test.

mod anomaly;
mod command;
mod customer;
mod device;
mod error;
mod event;
mod ids;
mod key;
mod lead;
mod license;
mod machine;
mod policy;
mod product;
mod release;
mod resource;
mod text;
mod values;

pub use anomaly::{AnomalyEvidence, AnomalyKind, AnomalyMark, AutoSuspend, OpenAnomaly, AUTO_SUSPEND_REASON};
pub use command::LicenseCommand;
pub use customer::{
    check_metadata, parse_customer_name, parse_email, Customer, CustomerChanges, CustomerCommand, CustomerError,
    CustomerEvent, CustomerFieldError, CustomerFields,
};
pub use device::{
    device_id, parse_app_version, AppVersionError, BlockedMachine, ClientAddress, Device, DeviceDetails,
    MAX_APP_VERSION_LEN, MAX_PAST_DEVICES,
};
pub use error::LicenseError;
pub use event::{LicenseEvent, EVENT_VERSION};
pub use ids::{CustomerId, DeviceId, IdError, LicenseId, OwnerId, ProductId, TenantId};
pub use key::{KeyFormat, LicenseKey, LicenseKeyError};
pub use lead::{parse_lead_text, Activity, Contact, Lead, LeadCommand, LeadError, LeadEvent, MAX_LEAD_TEXT};
pub use license::License;
pub use machine::{MachineHash, MachineId, MachineIdError, MachineName};
pub use policy::{Overage, Policy, Resurrection, TransferLimit, MAX_HEARTBEAT_SECS, MAX_TRANSFERS, MIN_HEARTBEAT_SECS};
pub use product::{
    parse_code, parse_features, parse_product_name, Product, ProductCommand, ProductError, ProductEvent,
    ProductFieldError, MAX_FEATURES,
};
pub use release::{
    check_for_update, parse_download_url, parse_release_notes, parse_version, Release, ReleaseFieldError, UpdateCheck,
    STABLE,
};
pub use resource::{
    check_resource_text, Resource, ResourceCommand, ResourceError, ResourceEvent, ResourcePool, ResourceStatus,
    MAX_RESOURCE_TEXT,
};
pub use text::{check_display_text, TextError};
pub use values::{LicenseStatus, LicenseType, Seats, ValueError};
