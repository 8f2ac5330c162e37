//! Anomaly detection: the tenants' thresholds, the per-device call
//! counter the API keeps, the detectors, and the table of anomalies.
//! The worker that runs the detectors over the log is in
//! `keyledger_workers::anomalies`.

pub mod calls;
pub mod detect;
pub mod resolve;
pub mod settings;
pub mod store;
pub mod surge;

pub use calls::{Allowance, CallCounter, OverAllowance};
pub use detect::{Detector, Finding, Observed};
pub use resolve::{resolve, ResolveError};
pub use settings::{Action, AnomalySettings, SettingsError};
pub use store::{Anomaly, AnomalyFilter, AnomalyStats, AnomalyStore, AnomalyStoreError, Resolution, SettingsCache};
pub use surge::{SurgeFinding, Surges};
