//! The keyledger server: the HTTP plumbing and the binary that composes
//! everything.
//!
//! The dialects (`keyledger-dialects`) turn requests into calls of the
//! application services (`keyledger-app`); this crate serves them: the
//! front door every request passes (request context and span, error
//! answers in the dialect's shape, rate limits and blocks, the request
//! screen), the server's own endpoints (`/health`, `/metrics`,
//! `/openapi.json`, `/docs`), the connection handling, the background
//! consumers and start-up. The `keyledger` binary in `main.rs` is a thin
//! shell around [`Application`].

mod background;
pub mod config;
mod config_reference;
mod consumers;
mod context;
mod dialect_errors;
mod limits;
mod metrics;
mod openapi;
mod ops;
mod progress;
mod router;
mod screen;
mod server;
mod startup;

pub use config::{AuditAction, Cli, Command, Config, ProjectionsAction};
pub use config_reference::markdown as configuration_reference;
pub use keyledger_http::Route;
pub use router::{table as route_table, MAX_BODY_BYTES};
pub use startup::{rebuild_projections, verify_log, Application, StartupError};
