//! Read models derived from the license event log.
//!
//! Readers (info, my-licenses, validate) ask these models, never the event
//! log. Today a model is brought up to date right after each commit, from
//! the state the command produced; the models accept a state only if it is
//! newer than the one they hold, so concurrent writers can't move them back.

mod license_view;
mod memory;

pub use license_view::{LicenseView, LicenseViews, ProjectionError, Versioned};
pub use memory::{Entry, MemoryView, Search};
