//! What every dialect handler can reach: a handful of services. The
//! server's own plumbing (rate limits, consumer statuses, `/health` and
//! `/metrics`) keeps its state in `keyledger-api`; of it, dialects see
//! only which background consumers are unhealthy, through
//! [`ConsumerHealth`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use keyledger_app::anomalies::SettingsCache;
use keyledger_app::client::ClientService;
use keyledger_app::customers::CustomerStore;
use keyledger_app::products::ProductStore;
use keyledger_app::serials::Serials;
use keyledger_app::service::LicenseService;
use keyledger_app::signing::rsa_keys::RsaKeys;
use keyledger_app::signing::Directory;
use keyledger_app::tenancy::TenancyStore;
use keyledger_app::webhooks::WebhookStore;
use keyledger_app::Metrics;
use keyledger_eventlog::{Checkpoints, EventLog};
use keyledger_projections::LicenseViews;

use crate::auth::Authenticator;

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
    /// The client calls every dialect serves.
    pub client: Arc<ClientService>,
    /// License commands, their read model, and the log they are kept in.
    pub licenses: Arc<LicenseService>,
    pub views: LicenseViews,
    pub log: EventLog,
    pub checkpoints: Checkpoints,
    /// Tenants, API keys and who presented which.
    pub tenancy: TenancyStore,
    /// Read-only analytics tokens (the V2 License Server dialect's).
    pub analytics: Arc<keyledger_app::analytics::AnalyticsTokens>,
    /// Tenants' system keys (the V2 License Server dialect's credential).
    pub system_keys: keyledger_app::system_keys::SystemKeyStore,
    pub auth: Authenticator,
    /// Signing keys and tenant settings, cached; and tenants' RSA keys.
    pub directory: Arc<Directory>,
    pub rsa_keys: Arc<RsaKeys>,
    /// The catalog: products and customers, and their serial numbers.
    pub products: ProductStore,
    pub customers: CustomerStore,
    /// Leads: institutions a tenant sells to.
    pub leads: keyledger_app::leads::LeadStore,
    /// Tenants' pools of allocatable resources.
    pub resources: keyledger_app::resources::ResourceStore,
    pub serials: Arc<Serials>,
    /// Webhook endpoints and their delivery queue.
    pub webhooks: Webhooks,
    /// Tenants' anomaly settings, cached.
    pub anomaly_settings: Arc<SettingsCache>,
    pub metrics: Arc<Metrics>,
    /// Keygen clients' machine fingerprints, sealed.
    pub fingerprints: keyledger_app::fingerprints::FingerprintStore,
    /// Which background consumers are down or behind, as `/health` says.
    pub consumer_health: Arc<dyn ConsumerHealth>,
    /// The admin panel's staff and their sessions.
    pub staff: keyledger_app::staff::StaffStore,
    /// Activations and validations per tenant per hour (the panel's charts).
    pub usage: keyledger_app::usage::UsageStore,
}

/// A background consumer that `/health` reports unhealthy.
#[derive(Debug, Clone)]
pub struct UnhealthyConsumer {
    pub name: String,
    /// What is wrong, in words: down, or how far behind.
    pub reason: String,
    /// Since when, where that is known (when it began failing, or the
    /// age of the oldest event it has not handled).
    pub since: Option<DateTime<Utc>>,
}

/// The binary runs the background consumers and knows their health; the
/// dialects (the V2 License Server's live statistics) ask it here.
pub trait ConsumerHealth: Send + Sync {
    fn unhealthy(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<UnhealthyConsumer>, keyledger_eventlog::EventLogError>> + Send + '_>>;
}

/// Webhook endpoints and deliveries, and where endpoints may point.
pub struct Webhooks {
    pub store: WebhookStore,
    /// Whether webhook URLs may point at private networks (and use http).
    pub allow_private: bool,
    /// The most endpoints one tenant may have.
    pub max_endpoints: usize,
}

impl std::ops::Deref for Webhooks {
    type Target = WebhookStore;

    fn deref(&self) -> &WebhookStore {
        &self.store
    }
}
