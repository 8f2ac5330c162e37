//! The client service: the one place that decides the client calls a
//! vendor's software makes — which license a caller may use, activate, the
//! check behind validate and heartbeat, deactivate, offline token claims
//! and the update check. Every API dialect, native included, parses its
//! wire format into the typed inputs here and renders the typed outcome
//! back; none decides anything of its own.
//!
//! Refusals by the license rules come back as [`ClientError::Refused`] (or,
//! from [`ClientService::check`], as the inner `Err` of a normal answer);
//! bad input as [`ClientError::Invalid`] naming the native field
//! (`licenseKey`, `machineId`, `machineName`, ...), which a dialect renames
//! into its own wire names.

mod calls;
mod check;
mod token;

use std::sync::Arc;

use chrono::{Duration, Utc};
use keyledger_domain::{
    ClientAddress, DeviceDetails, License, LicenseCommand, LicenseError, LicenseKey, MachineHash, MachineId,
    MachineName, Product,
};
use keyledger_projections::{LicenseViews, MemoryView};

pub use calls::{CallReport, CallReports};
pub use check::{error_chain, Checked, UpdateAnswer, Wants};

use crate::access::Caller;
use crate::anomalies::{CallCounter, SettingsCache};
use crate::metadata::Origin;
use crate::products::ProductStore;
use crate::serials::{SerialKind, Serials};
use crate::service::{CommandError, LicenseService};
use crate::signing::{ActiveKey, Directory, TenantKeys};

/// Any failure of a store or a library below the client service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a client call got no answer of the license rules' own.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Refused by the license rules (an unknown key included).
    #[error(transparent)]
    Refused(#[from] LicenseError),
    /// Bad input in one field, named as the native API names it.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Retries ran out while other writers kept changing the license.
    #[error("the license is being changed by other requests; retry shortly")]
    Contended,
    /// A store or library failed: the cause is kept for the log.
    #[error("{context}")]
    Failed {
        context: &'static str,
        #[source]
        source: BoxError,
    },
}

impl ClientError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_owned(), message: message.into() }
    }

    fn failed(context: &'static str) -> impl FnOnce(BoxError) -> Self {
        move |source| Self::Failed { context, source }
    }

    /// Whether this is what someone guessing keys is answered: an unknown
    /// or malformed license key (counted towards progressive blocks).
    pub fn is_failed_guess(&self) -> bool {
        match self {
            Self::Refused(LicenseError::NotFound) => true,
            Self::Invalid { field, .. } => field == "licenseKey",
            _ => false,
        }
    }
}

impl From<CommandError> for ClientError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Refused(reason) => Self::Refused(reason),
            CommandError::Contended | CommandError::GuardMoved => Self::Contended,
            other => Self::Failed { context: "a license command failed", source: Box::new(other) },
        }
    }
}

/// A tenant's figures at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveFigures {
    /// Licenses not deleted.
    pub licenses: usize,
    /// Licenses a client may use now.
    pub usable: usize,
    /// Devices holding seats.
    pub activations: usize,
    /// Devices seen within the heartbeat interval.
    pub active_sessions: usize,
    /// Devices whose heartbeat was recorded in the last minute.
    pub heartbeats_last_minute: usize,
}

/// The request a client call came in: where from, and who presented a
/// key (None: anonymous).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub origin: Origin<'a>,
    pub caller: Option<&'a Caller>,
}

/// A machine as the client named it, and its keyed hash (what events
/// hold), made once per call.
#[derive(Debug, Clone)]
pub struct Machine {
    pub id: MachineId,
    pub hash: MachineHash,
}

/// A license a caller may use, and its tenant's signing keys.
pub struct Visible {
    pub license: Arc<License>,
    pub tenant: Arc<TenantKeys>,
}

/// A client call about one machine: the license the caller may use, its
/// tenant's signing keys, and the machine (hashed once).
pub struct Session {
    pub license: Arc<License>,
    pub tenant: Arc<TenantKeys>,
    pub machine: Machine,
}

/// What a device says about itself when it activates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Activation<'a> {
    pub machine_name: Option<&'a str>,
    pub app_version: Option<&'a str>,
}

/// The settings the client rules read.
#[derive(Clone)]
pub struct ClientSettings {
    /// The server secret machine ids are hashed with.
    pub machine_secret: Arc<[u8]>,
    /// How long an offline license token lasts at most.
    pub token_ttl: Duration,
    /// At most one heartbeat per device per interval reaches the log from
    /// validate.
    pub heartbeat_interval: Duration,
    /// The same for the explicit heartbeat call.
    pub heartbeat_floor: Duration,
}

/// Which call a check answers: they differ only in how often the device's
/// heartbeat is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Validate,
    Heartbeat,
}

/// The stores the client rules read and write.
pub struct ClientStores {
    pub licenses: Arc<LicenseService>,
    pub views: LicenseViews,
    pub memory: Arc<MemoryView>,
    /// The log, for the newest events of a license a token describes.
    pub log: keyledger_eventlog::EventLog,
    pub directory: Arc<Directory>,
    pub products: ProductStore,
    pub serials: Arc<Serials>,
    pub anomaly_settings: Arc<SettingsCache>,
    pub call_counter: Arc<CallCounter>,
    pub call_reports: CallReports,
    /// Activations and validations per tenant per hour, counted here.
    pub usage: Arc<crate::usage::UsageCounts>,
    pub metrics: Arc<crate::Metrics>,
}

pub struct ClientService {
    stores: ClientStores,
    settings: ClientSettings,
    /// The lookups counter's two series, taken once: the hot path only adds.
    memory_lookups: prometheus_client::metrics::counter::Counter,
    store_lookups: prometheus_client::metrics::counter::Counter,
}

/// How stale a product read by a client call may be: a change made
/// through another process reaches this one's answers within this.
const PRODUCT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// The license key from a request, or bad input naming `licenseKey`.
pub fn parse_key(raw: Option<&str>) -> Result<LicenseKey, ClientError> {
    LicenseKey::parse(raw.unwrap_or_default()).map_err(|e| ClientError::invalid("licenseKey", e.to_string()))
}

/// The machine id from a request, or bad input naming `machineId`.
pub fn parse_machine(raw: Option<&str>) -> Result<MachineId, ClientError> {
    MachineId::parse(raw.unwrap_or_default()).map_err(|e| ClientError::invalid("machineId", e.to_string()))
}

impl ClientService {
    /// The tenant's licenses as this process holds them (deleted ones
    /// included), for statistics.
    pub async fn tenant_licenses(&self, tenant_id: &str) -> Vec<Arc<License>> {
        self.stores.memory.wait_loaded().await;
        self.stores.memory.licenses_of_tenant(tenant_id)
    }

    /// The tenant's live figures now (the V2 dialect's live statistics,
    /// the panel's overview), from this process's validation view.
    pub async fn live_figures(&self, tenant_id: &str, now: chrono::DateTime<Utc>) -> LiveFigures {
        let licenses = self.tenant_licenses_where(tenant_id, |license| !license.deleted).await;
        let devices = || licenses.iter().flat_map(|license| &license.devices);
        // A device in use validates or heartbeats at least once per
        // heartbeat interval, and each such call is recorded at most once
        // per interval: seen within it is in use.
        let session_since = now - self.settings.heartbeat_interval;
        let minute_ago = now - Duration::minutes(1);
        LiveFigures {
            licenses: licenses.len(),
            usable: licenses.iter().filter(|license| license.ensure_usable(now).is_ok()).count(),
            activations: devices().count(),
            active_sessions: devices().filter(|device| device.last_heartbeat_at >= session_since).count(),
            heartbeats_last_minute: devices().filter(|device| device.last_heartbeat_at >= minute_ago).count(),
        }
    }

    /// The tenant's licenses that pass `keep`, without copying the others
    /// out of the view. Right after a start, waits until the view is whole.
    pub async fn tenant_licenses_where(
        &self,
        tenant_id: &str,
        keep: impl FnMut(&License) -> bool,
    ) -> Vec<Arc<License>> {
        self.stores.memory.wait_loaded().await;
        self.stores.memory.tenant_licenses_where(tenant_id, keep)
    }

    /// The tenant's licenses a search finds (see
    /// [`keyledger_projections::MemoryView::search`]).
    pub async fn search_licenses(
        &self,
        search: &keyledger_projections::Search<'_>,
        devices: impl FnMut(&License) -> bool,
    ) -> Vec<Arc<License>> {
        self.stores.memory.wait_loaded().await;
        self.stores.memory.search(search, devices)
    }

    /// How often validate records a device's heartbeat at most: a device
    /// in use has been seen within it.
    pub fn heartbeat_interval(&self) -> Duration {
        self.settings.heartbeat_interval
    }

    /// How long an offline license token lasts at most: also how long a
    /// retired signing key stays published.
    pub fn token_ttl(&self) -> Duration {
        self.settings.token_ttl
    }

    pub fn new(stores: ClientStores, settings: ClientSettings) -> Self {
        let lookups =
            |source| stores.metrics.key_lookups.get_or_create(&crate::metrics::LookupLabels { source }).clone();
        let (memory_lookups, store_lookups) = (lookups("memory"), lookups("store"));
        Self { stores, settings, memory_lookups, store_lookups }
    }

    /// The machine with its hash.
    pub fn machine(&self, id: MachineId) -> Machine {
        let hash = id.hash(&self.settings.machine_secret);
        Machine { id, hash }
    }

    /// Who signs an answer given before a license is found: the caller's
    /// tenant's current key when the caller's key names a tenant, else
    /// the platform key.
    pub async fn signer_for(&self, caller: Option<&Caller>) -> Result<Arc<ActiveKey>, ClientError> {
        let directory = &self.stores.directory;
        let Some(tenant_id) = caller.and_then(|caller| caller.tenant_id.as_deref()) else {
            return Ok(directory.platform().clone());
        };
        let keys =
            directory.tenant(tenant_id).await.map_err(|e| ClientError::failed("signing keys unreadable")(e.into()))?;
        Ok(keys.map_or_else(|| directory.platform().clone(), |keys| keys.current.clone()))
    }

    /// The license with `key` if `caller` may use it: a tenant's key sees
    /// its own tenant's licenses only, the operator's every one, and an
    /// anonymous caller those of tenants that don't require a client key.
    /// Anything else is answered exactly as an unknown key.
    #[tracing::instrument(skip_all)]
    pub async fn resolve(&self, caller: Option<&Caller>, key: &LicenseKey) -> Result<Visible, ClientError> {
        self.resolve_where(caller, key, None).await
    }

    /// [`ClientService::resolve`] for an anonymous caller who names the
    /// tenant (a dialect mounted per tenant): another tenant's key is
    /// answered exactly as an unknown one, at an unknown one's cost.
    pub async fn resolve_in(&self, tenant_id: &str, key: &LicenseKey) -> Result<Visible, ClientError> {
        self.resolve_where(None, key, Some(tenant_id)).await
    }

    async fn resolve_where(
        &self,
        caller: Option<&Caller>,
        key: &LicenseKey,
        in_tenant: Option<&str>,
    ) -> Result<Visible, ClientError> {
        let not_found = || ClientError::Refused(LicenseError::NotFound);
        let (license, from_memory) = self.find(key).await?;
        let license = license.ok_or_else(not_found)?;
        let tenant = self
            .stores
            .directory
            .tenant(&license.tenant_id)
            .await
            .map_err(|e| ClientError::failed("signing keys unreadable")(e.into()))?;
        let allowed = match (caller, &tenant) {
            // A deleted license is unknown to every caller.
            _ if license.deleted => false,
            _ if in_tenant.is_some_and(|tenant_id| license.tenant_id != tenant_id) => false,
            (_, None) => false,
            (Some(caller), Some(_)) => caller.may_use(&license),
            (None, Some(tenant)) => !tenant.require_client_key,
        };
        match tenant {
            Some(tenant) if allowed => Ok(Visible { license, tenant }),
            _ => {
                // Answered as an unknown key, and at an unknown key's cost:
                // a key this process knew from memory is asked of the store
                // as a key it did not know would be, so the time of the
                // answer can't tell another tenant's real key from a guess.
                if from_memory {
                    self.lookup_in_store(key).await?;
                }
                Err(not_found())
            }
        }
    }

    /// The client preamble every dialect shares: the license the caller
    /// may use (anything else is an unknown key) and the machine.
    pub async fn open(
        &self,
        caller: Option<&Caller>,
        key: &LicenseKey,
        machine: MachineId,
    ) -> Result<Session, ClientError> {
        let Visible { license, tenant } = self.resolve(caller, key).await?;
        Ok(Session { license, tenant, machine: self.machine(machine) })
    }

    /// The license with this key, from this process's memory when it
    /// knows the key (the hot path: no database), else from the read model.
    /// Whether it came from memory rather than the store is returned too.
    async fn find(&self, key: &LicenseKey) -> Result<(Option<Arc<License>>, bool), ClientError> {
        if let Some(entry) = self.stores.memory.get_by_key(key) {
            self.memory_lookups.inc();
            return Ok((Some(entry.license), true));
        }
        // Generated by another process a moment ago, or not at all.
        let Some(view) = self.lookup_in_store(key).await? else { return Ok((None, false)) };
        if self.stores.memory.is_loading() {
            // Right after a start the rows behind their events (left by a
            // crash under an older release, or damaged) are still being
            // caught up: a row is taken only once the log says it is
            // current, else the license comes from the log itself.
            let failed = |e: keyledger_eventlog::EventLogError| ClientError::failed("event log unreadable")(e.into());
            let last = self.stores.log.last_sequence(&view.license.id).await.map_err(failed)?;
            if last.is_some_and(|last| last > view.version) {
                let (license, _, _) = self
                    .stores
                    .licenses
                    .load(&view.license.id)
                    .await
                    .map_err(|e| ClientError::failed("license unreadable from the event log")(e.into()))?;
                return Ok((Some(Arc::new(license)), false));
            }
        }
        self.stores.memory.put(view.license.clone(), view.version, view.last_hash.as_deref());
        Ok((Some(Arc::new(view.license)), false))
    }

    async fn lookup_in_store(
        &self,
        key: &LicenseKey,
    ) -> Result<Option<keyledger_projections::LicenseView>, ClientError> {
        self.store_lookups.inc();
        self.stores.views.by_key(key).await.map_err(|e| ClientError::failed("license view unreadable")(e.into()))
    }

    /// Runs a license command for a client call.
    pub async fn execute(
        &self,
        call: &Call<'_>,
        license: &License,
        command: LicenseCommand,
    ) -> Result<License, ClientError> {
        let metadata = crate::metadata::event_metadata(
            call.origin,
            call.caller.map(|caller| crate::metadata::Actor { key_id: &caller.key_id, role: caller.role.as_str() }),
            &license.tenant_id,
            Utc::now(),
        );
        Ok(self.stores.licenses.execute(&license.id, command, metadata).await?)
    }

    /// Takes a seat of `license` for the machine. Bad names are refused
    /// naming the native field (`machineName`, `appVersion`).
    #[tracing::instrument(skip_all, fields(license_id = %license.id))]
    pub async fn activate(
        &self,
        call: &Call<'_>,
        license: &License,
        machine: &Machine,
        activation: Activation<'_>,
    ) -> Result<License, ClientError> {
        self.take_seat(call, license, machine, activation, true).await
    }

    /// An administrator takes a seat for a machine without its client (its
    /// `LicenseActivated` names the administrator's key as the actor). The
    /// administrator's address and agent are not the device's, so they are
    /// not recorded as its details.
    pub async fn register_device(
        &self,
        call: &Call<'_>,
        license: &License,
        machine: &Machine,
        activation: Activation<'_>,
    ) -> Result<License, ClientError> {
        self.take_seat(call, license, machine, activation, false).await
    }

    async fn take_seat(
        &self,
        call: &Call<'_>,
        license: &License,
        machine: &Machine,
        activation: Activation<'_>,
        from_device: bool,
    ) -> Result<License, ClientError> {
        let machine_name = MachineName::parse(activation.machine_name)
            .map_err(|e| ClientError::invalid("machineName", e.to_string()))?;
        let app_version = keyledger_domain::parse_app_version(activation.app_version)
            .map_err(|e| ClientError::invalid("appVersion", e.to_string()))?;
        let details = if from_device {
            device_details(call.origin, app_version)
        } else {
            DeviceDetails { app_version, ip: None, user_agent: None }
        };
        let device_number = self.new_device_number(license, &machine.hash).await?;
        let at = Utc::now();
        let command =
            LicenseCommand::ActivateLicense { machine: machine.hash.clone(), machine_name, details, device_number, at };
        let activated = self.execute(call, license, command).await?;
        self.stores.usage.count(license.tenant_id.as_str(), crate::usage::Usage::Activation, at);
        Ok(activated)
    }

    /// Releases the machine's seat (a transfer, counted by a transfer limit).
    #[tracing::instrument(skip_all, fields(license_id = %license.id))]
    pub async fn deactivate(
        &self,
        call: &Call<'_>,
        license: &License,
        machine: &Machine,
    ) -> Result<License, ClientError> {
        let command = LicenseCommand::DeactivateLicense {
            machine: machine.hash.clone(),
            enforce_transfer_limit: true,
            at: Utc::now(),
        };
        self.execute(call, license, command).await
    }

    /// Releases every seat of the license at once.
    pub async fn deactivate_all(&self, call: &Call<'_>, license: &License) -> Result<License, ClientError> {
        self.execute(call, license, LicenseCommand::DeactivateAllDevices { at: Utc::now() }).await
    }

    /// The license's product, for answers that describe it (a dialect's
    /// `product` object); None for the tenant's default product.
    pub async fn product_of(&self, license: &License) -> Result<Option<Arc<Product>>, ClientError> {
        let Some(product_id) = &license.product_id else { return Ok(None) };
        self.stores
            .products
            .get_cached(product_id, PRODUCT_MAX_AGE)
            .await
            .map_err(|e| ClientError::failed("product unreadable")(e.into()))
    }

    /// A number for the machine if it is new to the license (as far as
    /// this process knows: a number taken for nothing is a gap, and a
    /// device that held a seat before keeps its own whatever is passed).
    async fn new_device_number(&self, license: &License, machine: &MachineHash) -> Result<Option<i64>, ClientError> {
        if license.knows_machine(machine) {
            return Ok(None);
        }
        let number = self
            .stores
            .serials
            .next(&license.tenant_id, SerialKind::Device)
            .await
            .map_err(|e| ClientError::failed("device number not taken")(e.into()))?;
        Ok(Some(number))
    }
}

/// Every feature the license entitles to: its own, then its product's.
pub fn features<'a>(license: &'a License, product: Option<&'a Product>) -> Vec<&'a str> {
    let own = license.features.iter().map(String::as_str);
    let of_product = product.into_iter().flat_map(|product| product.features.iter().map(String::as_str));
    let mut features: Vec<&str> = own.collect();
    features.extend(of_product.filter(|f| !license.features.iter().any(|own| own == f)));
    features
}

/// What a device reports about itself on this request.
fn device_details(origin: Origin<'_>, app_version: Option<String>) -> DeviceDetails {
    DeviceDetails {
        app_version,
        ip: origin.client_ip.map(ClientAddress::from_text),
        user_agent: origin.user_agent.and_then(DeviceDetails::user_agent),
    }
}
