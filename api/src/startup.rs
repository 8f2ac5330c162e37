//! Building the application from its configuration: store, migrations,
//! secrets, state, router and listener.

use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use keyledger_eventlog::{
    CheckpointCheck, Checkpoints, Database, EventLog, EventLogError, SignedCheckpoint, Snapshots, VerifyReport,
};
use keyledger_projections::{LicenseViews, MemoryView};
use keyledger_workers::{MemoryFollower, ProjectionRunner, RelayConfig, Runtime};
use tokio::net::TcpListener;

use crate::background;
use crate::config::Config;
use crate::limits::client_ip::parse_trusted;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::ops::{Ops, OpsState};
use crate::router::router;
use crate::server::{self, ServerSettings};
use keyledger_app::anomalies::{AnomalyStore, SettingsCache};
use keyledger_app::secret::{random_token, sha256_hex};
use keyledger_app::service::LicenseService;
use keyledger_app::signing::{self, Directory, DirectoryError, MasterKey};
use keyledger_app::tenancy::TenancyStore;
use keyledger_http::auth::{Authenticator, KEY_PREFIX, OPERATOR_PREFIX};
use keyledger_http::state::{AppState, Shared, Webhooks};

const OPERATOR_TOKEN_FILE: &str = "operator-token";
const SIGNING_KEY_FILE: &str = "checkpoint-signing-key";
const MASTER_KEY_FILE: &str = "master-key";
const MACHINE_SECRET_NAME: &str = "machine_id_hmac_key";
const MIN_SECRET_LEN: usize = 16;
/// How long a process trusts its copy of a tenant's anomaly settings; a
/// change made through another process is seen within this.
const ANOMALY_SETTINGS_TTL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("cannot use data directory {path}")]
    DataDir { path: String, source: io::Error },
    #[error(transparent)]
    Store(#[from] EventLogError),
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("the operator token must be at least {MIN_SECRET_LEN} characters and must not start with `klk_` (that prefix is for tenant keys)")]
    WeakOperatorToken,
    #[error("KEYLEDGER_MACHINE_ID_SECRET must be at least {MIN_SECRET_LEN} characters")]
    WeakMachineIdSecret,
    #[error("the checkpoint signing key must be 64 hex characters (32 bytes)")]
    BadSigningKey,
    #[error("the master key (KEYLEDGER_MASTER_KEY or the data directory's master-key file) must be 64 hex characters (32 bytes)")]
    BadMasterKey,
    #[error("the database holds signing keys sealed with a master key, but this process has none: set KEYLEDGER_MASTER_KEY to the key the other processes use (or restore the data directory's master-key file). Nothing was changed")]
    MissingMasterKey,
    /// A signing key or the master key refused (what to do is in the
    /// message, which has no cause behind it).
    #[error("{0}. Nothing was changed")]
    Directory(DirectoryError),
    /// The signing keys could not be checked (a failure of the store).
    #[error("cannot check the signing keys against the master key. Nothing was changed")]
    KeyCheck(#[source] DirectoryError),
    /// A bad value of a setting, described for the person who set it.
    #[error("webhook settings: {0}")]
    WebhookSettings(String),
    #[error("admin panel settings: {0}")]
    PanelSettings(String),
    #[error("cannot prepare webhook delivery")]
    Webhooks(#[source] keyledger_workers::ConsumerError),
    /// A bad value of the setting, described for the person who set it.
    #[error("KEYLEDGER_TRUSTED_PROXIES: {0}")]
    TrustedProxies(String),
    #[error("cannot rebuild the read models from the event log")]
    Rebuild(#[source] keyledger_workers::ProjectorError),
    #[error("cannot count the read-model rows written by an earlier release")]
    OutdatedViews(#[source] keyledger_projections::ProjectionError),
    #[error("cannot bring the read models up to date with the event log")]
    CatchUp(#[source] keyledger_app::CommandError),
    #[error("cannot load the validation view from the event log")]
    Warm(#[source] keyledger_workers::ProjectorError),
    #[error("no read model is called {0:?}; there is: license_view")]
    UnknownReadModel(String),
}

impl From<DirectoryError> for StartupError {
    /// A refusal says what to do itself; a failure keeps its cause.
    fn from(error: DirectoryError) -> Self {
        match error {
            DirectoryError::Sealed { .. } | DirectoryError::WrongMasterKey => Self::Directory(error),
            DirectoryError::Database(_) | DirectoryError::MasterCheck(_) | DirectoryError::KeyGeneration(_) => {
                Self::KeyCheck(error)
            }
        }
    }
}

/// The store and the command service over it: what both serving and the
/// maintenance commands need.
struct Core {
    db: Database,
    views: LicenseViews,
    memory: Arc<MemoryView>,
    licenses: Arc<LicenseService>,
    metrics: Arc<Metrics>,
}

impl Core {
    async fn open(config: &Config) -> Result<Self, StartupError> {
        private_data_dir(&config.data_dir).map_err(|source| data_dir_error(config, source))?;
        let database_url = config.database_url();
        let sqlite_file = sqlite_path(&database_url);
        if let Some(file) = &sqlite_file {
            private_file(file).map_err(|source| data_dir_error(config, source))?;
        }
        let db = Database::connect(&database_url, config.db_max_connections).await?;
        db.migrate().await?;
        if let Some(file) = &sqlite_file {
            // SQLite gives its -wal and -shm files the database file's mode;
            // files made by an older keyledger are narrowed here.
            private_sidecars(file).map_err(|source| data_dir_error(config, source))?;
        }
        EventLog::new(db.clone()).check_transaction_ids().await?;
        let views = LicenseViews::new(db.clone());
        let memory = Arc::new(MemoryView::default());
        let log = EventLog::new(db.clone());
        let metrics = Arc::new(Metrics::default());
        let licenses = Arc::new(LicenseService::new(
            log,
            Snapshots::new(db.clone()),
            views.clone(),
            memory.clone(),
            metrics.clone(),
        ));
        Ok(Self { db, views, memory, licenses, metrics })
    }
}

/// The data directory holds license keys and secrets: it is made
/// accessible to its owner only, whatever the umask. The files keyledger
/// keeps in it are made so as they are created ([`private_file`],
/// [`secret_file`]), and narrowed at start if an older version left them
/// wider; other files are not keyledger's to touch.
fn private_data_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for name in [OPERATOR_TOKEN_FILE, SIGNING_KEY_FILE, MASTER_KEY_FILE] {
            match fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o600)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The file of a `sqlite://` URL, if it names one (not `:memory:`).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// Creates `file` empty with mode 0600 if it is missing, so SQLite opens
/// it rather than creating it with the umask's mode; narrows it otherwise.
fn private_file(file: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(file, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn private_sidecars(file: &Path) -> io::Result<()> {
    #[cfg(unix)]
    for suffix in ["-wal", "-shm", "-journal"] {
        use std::os::unix::fs::PermissionsExt;
        let mut sidecar = file.as_os_str().to_owned();
        sidecar.push(suffix);
        match fs::set_permissions(&sidecar, fs::Permissions::from_mode(0o600)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

fn data_dir_error(config: &Config, source: io::Error) -> StartupError {
    StartupError::DataDir { path: config.data_dir.display().to_string(), source }
}

/// `keyledger audit verify`: recomputes the hash chains of the log and,
/// given a kept checkpoint, checks the log against it.
pub async fn verify_log(
    config: &Config,
    license_id: Option<&str>,
    checkpoint: Option<(&SignedCheckpoint, &str)>,
) -> Result<(VerifyReport, Option<CheckpointCheck>), StartupError> {
    let core = Core::open(config).await?;
    let outcome = async {
        let log = EventLog::new(core.db.clone());
        // The last position is about the number of events: the bar's length.
        let total = log.end_cursor().await?.map_or(0, |end| end.position.max(0) as u64);
        let checked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = crate::progress::Progress::show("verifying", total, checked.clone());
        let report = log.verify_counting(license_id, checked.clone()).await;
        progress.finish();
        let report = report?;
        let check = match checkpoint {
            Some((checkpoint, trusted_key)) => {
                // Checking needs no signing key; any key builds the handle.
                let checker = Checkpoints::new(core.db.clone(), SigningKey::from_bytes(&[0; 32]));
                Some(checker.check(checkpoint, trusted_key).await?)
            }
            None => None,
        };
        Ok::<_, EventLogError>((report, check))
    }
    .await;
    core.db.close().await;
    Ok(outcome?)
}

/// The read models `keyledger projections rebuild` knows.
pub const READ_MODELS: &[&str] = &["license_view"];

/// `keyledger projections rebuild [NAME]`: replays the log from position 0
/// into the read model (all of them without a name) and returns how many
/// licenses it replayed.
pub async fn rebuild_projections(config: &Config, name: Option<&str>) -> Result<usize, StartupError> {
    if let Some(name) = name.filter(|name| !READ_MODELS.contains(name)) {
        return Err(StartupError::UnknownReadModel(name.to_owned()));
    }
    // The rebuild streams on connections while it writes on others: a
    // process of its own, it takes at least four whatever the server's
    // setting (see `KeyRange::for_this_machine`).
    let mut config = config.clone();
    config.db_max_connections = config.db_max_connections.max(4);
    let core = Core::open(&config).await?;
    let total = match EventLog::new(core.db.clone()).end_cursor().await {
        Ok(end) => end.map_or(0, |end| end.position.max(0) as u64),
        Err(error) => {
            core.db.close().await;
            return Err(error.into());
        }
    };
    let replayed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = crate::progress::Progress::show("rebuilding", total, replayed.clone());
    let rebuilt =
        ProjectionRunner::new(core.db.clone()).rebuild_counting(replayed.clone()).await.map_err(StartupError::Rebuild);
    progress.finish();
    core.db.close().await;
    rebuilt
}

/// A database written by an earlier release holds read-model rows folded
/// under older rules: they are replayed from the log, in bulk, before this
/// process serves (what `keyledger projections rebuild` does), so every
/// license shows what today's rules make of its events.
async fn refold_outdated_views(db: &Database, views: &LicenseViews) -> Result<(), StartupError> {
    let outdated = views.outdated_count().await.map_err(StartupError::OutdatedViews)?;
    if outdated == 0 {
        return Ok(());
    }
    tracing::info!(licenses = outdated, "read-model rows from an earlier release: replaying the log into them");
    let started = std::time::Instant::now();
    let rebuilt = ProjectionRunner::new(db.clone()).rebuild().await.map_err(StartupError::Rebuild)?;
    tracing::info!(licenses = rebuilt, seconds = started.elapsed().as_secs_f64(), "read models replayed");
    Ok(())
}

/// How long shutdown waits for background consumers to finish their step.
const CONSUMER_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

pub struct Application {
    listener: TcpListener,
    state: OpsState,
    runtime: Runtime,
    background: background::Settings,
    server: ServerSettings,
    /// Set when this start generated the operator token, so it can be shown once.
    pub new_operator_token: Option<String>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let Core { db, views, memory, licenses, metrics } = Core::open(&config).await?;
        refold_outdated_views(&db, &views).await?;

        let (operator_token, new_operator_token) = match &config.operator_token {
            Some(token) => (token.trim().to_owned(), None),
            None => {
                let generate = || format!("{OPERATOR_PREFIX}{}", random_token(43));
                let (token, created) = secret_file(&config.data_dir.join(OPERATOR_TOKEN_FILE), generate)
                    .map_err(|e| data_dir_error(&config, e))?;
                (token.clone(), created.then_some(token))
            }
        };
        if operator_token.len() < MIN_SECRET_LEN || operator_token.starts_with(KEY_PREFIX) {
            return Err(StartupError::WeakOperatorToken);
        }
        let machine_secret = match &config.machine_id_secret {
            Some(secret) if secret.len() < MIN_SECRET_LEN => return Err(StartupError::WeakMachineIdSecret),
            Some(secret) => secret.clone(),
            None => db.shared_secret(MACHINE_SECRET_NAME, &random_token(64)).await?,
        };

        let master = master_key(&config, &db).await?;
        signing::check_all_keys_open(&db, &master).await?;
        signing::rsa_keys::check_all_open(&db, &master).await?;
        let rsa_keys = Arc::new(signing::rsa_keys::RsaKeys::new(db.clone(), master.clone()));
        let webhooks = keyledger_app::webhooks::WebhookStore::new(db.clone(), Arc::new(master.clone()));
        let analytics = Arc::new(keyledger_app::analytics::AnalyticsTokens::new(db.clone(), master.clone()));
        let fingerprints = keyledger_app::fingerprints::FingerprintStore::new(db.clone(), master.clone());
        let directory = Arc::new(Directory::open(db.clone(), master.clone()).await?);
        let retry_policy = config.retry_policy().map_err(StartupError::WebhookSettings)?;
        let panel = config.panel_config().map_err(StartupError::PanelSettings)?;
        if config.webhook_delivery == "on" && config.nats_url.is_none() {
            keyledger_workers::start_dispatching_at_end_if_new(&EventLog::new(db.clone()), &webhooks)
                .await
                .map_err(StartupError::Webhooks)?;
        }

        let follower = MemoryFollower::new(db.clone(), memory.clone());
        let follower_progress = follower.progress();
        follower.follow_from_end().await.map_err(StartupError::Warm)?;
        load_validation_view(licenses.clone(), views.clone(), memory.clone());
        let runtime = Runtime::new(db.clone());
        let checkpoints = Checkpoints::new(db.clone(), signing_key(&config)?);
        let tenancy = TenancyStore::new(db.clone());
        let system_keys = keyledger_app::system_keys::SystemKeyStore::new(db.clone(), EventLog::new(db.clone()));
        let trusted_proxies = parse_trusted(&config.trusted_proxies).map_err(StartupError::TrustedProxies)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(server::tls::acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(server::tls::TlsError::HalfConfigured.into()),
        };
        let limits = Arc::new(Limits::new(
            keyledger_app::blocks::BlockStore::new(db.clone()),
            config.limit_settings(),
            crate::router::dialects(),
        ));
        if !limits.enabled() {
            tracing::warn!("rate limits and address blocks are off (KEYLEDGER_RATE_LIMITS=off)");
        }
        let products = keyledger_app::products::ProductStore::new(db.clone());
        let serials = Arc::new(keyledger_app::serials::Serials::new(db.clone()));
        let anomaly_settings = Arc::new(SettingsCache::new(AnomalyStore::new(db.clone()), ANOMALY_SETTINGS_TTL));
        let call_counter: Arc<keyledger_app::anomalies::CallCounter> = Arc::default();
        let call_reports = keyledger_app::client::CallReports::default();
        let usage_counts: Arc<keyledger_app::usage::UsageCounts> = Arc::default();
        let machine_secret: Arc<[u8]> = machine_secret.into_bytes().into();
        let token_ttl = chrono::Duration::seconds(config.token_ttl_secs.into());
        let heartbeat_interval = chrono::Duration::seconds(config.heartbeat_interval_secs.into());
        let heartbeat_floor = chrono::Duration::seconds(config.heartbeat_floor_secs.into());
        let client = Arc::new(keyledger_app::client::ClientService::new(
            keyledger_app::client::ClientStores {
                licenses: licenses.clone(),
                views: views.clone(),
                memory: memory.clone(),
                log: EventLog::new(db.clone()),
                directory: directory.clone(),
                products: products.clone(),
                serials: serials.clone(),
                anomaly_settings: anomaly_settings.clone(),
                call_counter: call_counter.clone(),
                call_reports: call_reports.clone(),
                usage: usage_counts.clone(),
                metrics: metrics.clone(),
            },
            keyledger_app::client::ClientSettings {
                machine_secret: machine_secret.clone(),
                token_ttl,
                heartbeat_interval,
                heartbeat_floor,
            },
        ));
        let consumers = Arc::new(crate::consumers::ConsumerProbe {
            statuses: runtime.statuses(),
            validation_view: memory.clone(),
            follower_progress,
            log: EventLog::new(db.clone()),
            relay_enabled: config.nats_url.is_some(),
            max_lag: std::time::Duration::from_secs(config.health_max_lag_secs.into()),
            unhealthy_cache: Default::default(),
        });
        let app = AppState::new(Shared {
            client,
            licenses,
            views,
            log: EventLog::new(db.clone()),
            checkpoints,
            auth: Authenticator::new(&operator_token, tenancy.clone(), system_keys.clone(), directory.clone()),
            tenancy,
            system_keys,
            analytics,
            directory,
            rsa_keys,
            products,
            customers: keyledger_app::customers::CustomerStore::new(db.clone()),
            resources: keyledger_app::resources::ResourceStore::new(db.clone()),
            leads: keyledger_app::leads::LeadStore::new(db.clone()),
            serials,
            webhooks: Webhooks {
                store: webhooks,
                allow_private: config.webhook_allow_private_networks,
                max_endpoints: config.webhook_max_endpoints as usize,
            },
            anomaly_settings,
            metrics,
            consumer_health: consumers.clone(),
            fingerprints,
            staff: keyledger_app::staff::StaffStore::new(db.clone(), master.clone()),
            usage: keyledger_app::usage::UsageStore::new(db.clone()),
        });
        let state = OpsState::new(Ops {
            app,
            db,
            memory,
            limits,
            metrics_token: config
                .metrics_token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .map(|t| sha256_hex(t.trim()).into()),
            consumers,
            call_reports,
            usage_counts,
            panel: panel.map(Arc::new),
        });
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
        let every = |secs: u32| (secs > 0).then(|| std::time::Duration::from_secs(secs.into()));
        let relay = config.nats_url.clone().map(|nats_url| RelayConfig {
            nats_url,
            stream: config.nats_stream.clone(),
            duplicate_window: std::time::Duration::from_secs(config.nats_duplicate_window_secs.into()),
        });
        let background = background::Settings {
            expiry_sweep: every(config.expiry_sweep_secs),
            heartbeat_sweep: every(config.heartbeat_sweep_secs),
            checkpoint_every: every(config.checkpoint_secs),
            relay,
            retry_policy,
            webhook_delivery: config.webhook_delivery == "on",
            anomaly_detection: config.anomaly_detection == "on",
        };
        Ok(Self {
            listener,
            state,
            runtime,
            background,
            server: config.server_settings(trusted_proxies, tls),
            new_operator_token,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Resolves once the validation view, loaded in the background from
    /// the start, holds every license: what `/health` waits for before it
    /// says healthy.
    pub fn validation_view_loaded(&self) -> impl Future<Output = ()> + Send + 'static {
        let view = self.state.consumers.validation_view.clone();
        async move { view.wait_loaded().await }
    }

    /// Serves, with every background consumer (see [`background`]), until
    /// `shutdown` resolves; then finishes in-flight requests, lets the
    /// consumers finish the step each is taking, and closes the store.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let db = self.state.db.clone();
        let mut runtime = self.runtime;
        background::start(&mut runtime, &self.state, self.background);
        let served =
            server::serve(self.listener, router(self.state.app.clone(), self.state), self.server, shutdown).await;
        runtime.shutdown(CONSUMER_GRACE).await;
        db.close().await;
        served
    }
}

/// The master key: from the configuration, or from a 0600 file in the
/// data directory, made on first start. A process with no key at all
/// must not make one for a database whose keys were sealed with another.
async fn master_key(config: &Config, db: &Database) -> Result<MasterKey, StartupError> {
    let path = config.data_dir.join(MASTER_KEY_FILE);
    let hex_key = match &config.master_key {
        Some(key) => key.clone(),
        None if path.exists() => secret_file(&path, MasterKey::generate_hex).map_err(|e| data_dir_error(config, e))?.0,
        None => {
            if signing::has_sealed_secrets(db).await.map_err(EventLogError::from)? {
                return Err(StartupError::MissingMasterKey);
            }
            secret_file(&path, MasterKey::generate_hex).map_err(|e| data_dir_error(config, e))?.0
        }
    };
    MasterKey::from_hex(&hex_key).map_err(|_| StartupError::BadMasterKey)
}

/// The checkpoint signing key: from the configuration, or from a 0600 file
/// in the data directory, created on first start. Never the database: the
/// key must be out of reach of whoever could rewrite the log.
fn signing_key(config: &Config) -> Result<SigningKey, StartupError> {
    let hex_key = match &config.signing_key {
        Some(key) => key.clone(),
        None => {
            secret_file(&config.data_dir.join(SIGNING_KEY_FILE), Checkpoints::generate_key_hex)
                .map_err(|e| data_dir_error(config, e))?
                .0
        }
    };
    Checkpoints::key_from_hex(&hex_key).ok_or(StartupError::BadSigningKey)
}

/// Reads a secret from `path`, creating it (mode 0600) with `generate` if
/// it is missing or empty. Returns the secret and whether it is new.
fn secret_file(path: &Path, generate: impl FnOnce() -> String) -> io::Result<(String, bool)> {
    match fs::read_to_string(path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok((secret.trim().to_owned(), false)),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let secret = generate();
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok((secret, true))
}

/// Catches up the read-model rows behind their events, then loads the
/// validation view, in the background while the process already serves.
/// Meanwhile a lookup of a license the view does not hold yet goes to the
/// read model, whose row is taken only if the log says it is current
/// (else the license is read from the log), listings of a tenant's
/// licenses wait until the view is whole, and `/health` answers 503
/// "loading". So a restart answers validate at once, however many
/// licenses there are.
fn load_validation_view(licenses: Arc<LicenseService>, views: LicenseViews, memory: Arc<MemoryView>) {
    memory.begin_loading();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut caught_up = false;
        loop {
            let step = async {
                if !caught_up {
                    let behind = licenses.catch_up_views().await.map_err(StartupError::CatchUp)?;
                    if behind > 0 {
                        tracing::warn!(
                            licenses = behind,
                            "read models were behind the event log and have been caught up"
                        );
                    }
                    caught_up = true;
                }
                keyledger_workers::load_views(&views, &memory).await.map_err(StartupError::Warm)
            };
            match step.await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(error = %keyledger_app::client::error_chain(&error), "cannot load the validation view; trying again in a second");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        memory.finish_loading();
        release_freed_memory();
        tracing::info!(licenses = memory.len(), seconds = started.elapsed().as_secs_f64(), "validation view loaded");
    });
}

/// Hands the memory freed while loading the validation view (every row's
/// JSON, parsed and dropped) back to the system. glibc keeps freed memory
/// in its heap for reuse; after a load of a million rows that is hundreds
/// of megabytes of resident memory the process will not need again.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heap to the
    // system; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
