//! The application layer: what both the HTTP API and the background
//! workers do to the system, whoever asks.
//!
//! - [`service::LicenseService`] runs a license command: decides it on the
//!   license's latest state, appends its events with their metadata and
//!   read-model row, retries a lost race, counts the outcome.
//! - [`metadata`]: who caused an event, from where, when.
//! - [`tenancy`]: tenants, API keys and their roles.
//! - [`signing`]: tenants' signing keys (Ed25519 and RSA), cached per process.
//! - [`expiry`]: recording expiries that have passed.
//! - [`metrics`]: the process's Prometheus registry.
//! - [`webhooks`]: endpoints, signatures, URL safety and the delivery queue.
//! - [`anomalies`]: thresholds, call counting, detectors and the anomaly table.
//! - [`history`]: a license's state at an instant, replayed from its events.
//! - [`staff`]: the admin panel's people, invitations and sessions.
//! - [`generation`]: generating a license for a product at the version read.
//! - [`switch`]: switching licenses off, on and deleting them, one or many.
//! - [`usage`]: activations and validations per tenant per hour.
//! - [`aggregates`]: the catalog's records (products, customers), each
//!   with its own chain in the log and a view row written with its events.
//!
//! Nothing here knows about HTTP.

pub mod access;
pub mod aggregates;
pub mod analytics;
pub mod anomalies;
pub mod blocks;
pub mod client;
pub mod culling;
pub mod customers;
pub mod expiry;
pub mod fingerprints;
pub mod generation;
pub mod history;
pub mod lead_csv;
pub mod leads;
pub mod master;
pub mod metadata;
pub mod metrics;
pub mod products;
pub mod resources;
pub mod search;
pub mod secret;
pub mod serials;
pub mod service;
pub mod signing;
pub mod staff;
mod sweep;
pub mod switch;
pub mod system_keys;
pub mod tenancy;
pub mod totp;
pub mod usage;
pub mod webhooks;

pub use metrics::Metrics;
pub use service::{CommandError, LicenseService};
pub use tenancy::{Role, TenancyStore, KEY_PREFIX, OPERATOR_PREFIX};
