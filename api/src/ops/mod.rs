//! The server's own endpoints, beside the dialects: service status and
//! health (`/`, `/health`), Prometheus metrics (`/metrics`) and the API's
//! description (`/openapi.json`, `/docs`). They read the server's plumbing
//! (consumer statuses, rate limits, the pool), which no dialect sees.

mod docs;
mod health;
mod metrics;

use std::sync::Arc;

use keyledger_eventlog::Database;
use keyledger_http::{AppState, Routes};
use keyledger_projections::MemoryView;

use crate::limits::Limits;

/// What the server's own endpoints and its background work read.
pub struct Ops {
    pub app: AppState,
    pub db: Database,
    /// Every license's current state in this process, for validate.
    pub memory: Arc<MemoryView>,
    /// Rate limits and address blocks.
    pub limits: Arc<Limits>,
    /// SHA-256 of `KEYLEDGER_METRICS_TOKEN`, when `/metrics` needs one.
    pub metrics_token: Option<Arc<str>>,
    /// The background consumers' statuses and lag, for `/health` and
    /// `/metrics` (and the follower's progress, which it also reads).
    pub consumers: Arc<crate::consumers::ConsumerProbe>,
    /// Call-rate reports the client calls queue for the log.
    pub call_reports: keyledger_app::client::CallReports,
    /// Usage counted by the client calls, written by the `usage` consumer.
    pub usage_counts: std::sync::Arc<keyledger_app::usage::UsageCounts>,
    /// The admin panel's settings, when it is served.
    pub panel: Option<Arc<keyledger_panel::PanelConfig>>,
}

/// Cloned for every request to the server's own endpoints: one `Arc`.
#[derive(Clone)]
pub struct OpsState(Arc<Ops>);

impl OpsState {
    pub fn new(ops: Ops) -> Self {
        Self(Arc::new(ops))
    }
}

impl std::ops::Deref for OpsState {
    type Target = Ops;

    fn deref(&self) -> &Ops {
        &self.0
    }
}

pub fn routes() -> Routes<OpsState> {
    Routes::new().merge(health::routes()).merge(metrics::routes()).merge(docs::routes())
}
