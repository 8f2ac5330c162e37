//! What every API dialect is built with, and nothing any one of them owns:
//! the application state handlers reach, request extraction whose errors
//! name the field at fault, the error type, API-key authentication, signed
//! answers, the route registry and the [`dialect::Dialect`] abstraction.
//!
//! Dialects (the `keyledger-dialects` crate) depend on this; the server's
//! plumbing (`keyledger-api`: the front door, rate limits, OpenAPI
//! assembly, the binary) composes them.

pub mod auth;
pub mod catalog;
pub mod dates;
pub mod dialect;
pub mod error;
pub mod extract;
pub mod metadata;
pub mod routes;
pub mod signed;
pub mod state;

pub use dialect::{Dialect, Dialects};
pub use error::{ApiError, ApiResult, ErrorParts, ErrorShape};
pub use routes::{Route, Routes};
pub use state::AppState;

/// An instant as every answer writes it: RFC 3339, whole seconds, `Z`.
pub fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
