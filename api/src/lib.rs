//! The keyledger HTTP API.
//!
//! This crate composes the rest: it turns requests into license commands
//! and reads, decides who may do what (tenants, API keys, roles), and maps
//! results onto seed 000's wire format. The `keyledger` binary in
//! `main.rs` is a thin shell around [`Application`].

pub mod auth;
mod background;
pub mod config;
mod consumers;
mod dialects;
mod error;
mod extract;
mod limits;
mod metadata;
mod metrics;
mod openapi;
mod router;
mod screen;
mod server;
mod startup;
mod state;
mod wire;

pub use config::{AuditAction, Cli, Command, Config, ProjectionsAction};
pub use router::{table as route_table, Route, MAX_BODY_BYTES};
pub use startup::{rebuild_projections, verify_log, Application, StartupError};
