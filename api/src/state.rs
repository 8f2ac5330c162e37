//! What every handler can reach.

use std::sync::Arc;

use chrono::Duration;
use keyledger_domain::{MachineHash, MachineId};
use keyledger_eventlog::{Checkpoints, Database, EventLog};
use keyledger_projections::{LicenseViews, MemoryView};

use crate::auth::Authenticator;
use keyledger_app::signing::Directory;
use keyledger_app::service::LicenseService;
use keyledger_app::tenancy::TenancyStore;

/// Cloned for every request (axum's `State`), so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// The client calls every dialect serves (`keyledger_app::client`).
    pub client: Arc<keyledger_app::client::ClientService>,
    /// Call-rate reports the client calls queue for the log.
    pub call_reports: keyledger_app::client::CallReports,
    pub db: Database,
    pub log: EventLog,
    pub checkpoints: Checkpoints,
    pub licenses: Arc<LicenseService>,
    pub views: LicenseViews,
    /// Every license's current state in this process, for validate.
    pub memory: Arc<MemoryView>,
    pub tenancy: TenancyStore,
    pub auth: Authenticator,
    /// Signing keys and tenant settings, cached.
    pub directory: Arc<Directory>,
    /// Tenants' RSA keys, for seed 001's signed answers.
    pub rsa_keys: Arc<keyledger_app::signing::rsa_keys::RsaKeys>,
    /// Rate limits and address blocks.
    pub limits: Arc<crate::limits::Limits>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// SHA-256 of `KEYLEDGER_METRICS_TOKEN`, when `/metrics` needs one.
    pub metrics_token: Option<Arc<str>>,
    /// Where this process's validation-view follower has got to.
    pub follower_progress: Arc<std::sync::Mutex<keyledger_eventlog::Cursor>>,
    /// The background consumers' statuses, for `/health` and `/metrics`.
    pub consumers: Arc<keyledger_workers::Statuses>,
    /// Past this lag (or this long failing) a consumer is reported unhealthy.
    pub health_max_lag: std::time::Duration,
    /// Whether this process runs a NATS relay (whose lag is reported).
    pub relay_enabled: bool,
    /// How long an offline license token lasts at most.
    pub token_ttl: Duration,
    pub machine_secret: Arc<[u8]>,
    /// Webhook endpoints and their delivery queue.
    pub webhooks: keyledger_app::webhooks::WebhookStore,
    pub products: keyledger_app::products::ProductStore,
    pub customers: keyledger_app::customers::CustomerStore,
    pub serials: Arc<keyledger_app::serials::Serials>,
    /// Whether webhook URLs may point at private networks (and use http).
    pub webhook_allow_private: bool,
    /// Tenants' anomaly settings, cached for the client endpoints.
    pub anomaly_settings: Arc<keyledger_app::anomalies::SettingsCache>,
    /// Validate and heartbeat calls per device, for the anomaly detector.
    pub call_counter: Arc<keyledger_app::anomalies::CallCounter>,
    /// At most one heartbeat per device per interval reaches the log.
    pub heartbeat_interval: Duration,
    /// The same for the explicit heartbeat endpoint.
    pub heartbeat_floor: Duration,
}

impl Shared {
    pub fn hash_machine(&self, machine: &MachineId) -> MachineHash {
        machine.hash(&self.machine_secret)
    }
}
