//! Building the application from its configuration: store, migrations,
//! secrets, state, router and listener.

use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use keyledger_eventlog::{license_event_store, Database, EventLog, EventLogError, VerifyReport};
use keyledger_projections::LicenseViews;
use tokio::net::TcpListener;

use crate::auth::{Authenticator, KEY_PREFIX, OPERATOR_PREFIX};
use crate::config::Config;
use crate::expiry;
use crate::routes::router;
use crate::secret::random_token;
use crate::service::LicenseService;
use crate::state::AppState;
use crate::tenancy::TenancyStore;

const OPERATOR_TOKEN_FILE: &str = "operator-token";
const MACHINE_SECRET_NAME: &str = "machine_id_hmac_key";
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: String, source: io::Error },
    #[error(transparent)]
    Store(#[from] EventLogError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("the operator token must be at least {MIN_SECRET_LEN} characters and must not start with `klk_` (that prefix is for tenant keys)")]
    WeakOperatorToken,
    #[error("KEYLEDGER_MACHINE_ID_SECRET must be at least {MIN_SECRET_LEN} characters")]
    WeakMachineIdSecret,
    #[error("cannot bring read models up to date: {0}")]
    Projection(String),
}

/// The store and the command service over it: what both serving and the
/// maintenance commands need.
struct Core {
    db: Database,
    views: LicenseViews,
    licenses: Arc<LicenseService>,
}

impl Core {
    async fn open(config: &Config) -> Result<Self, StartupError> {
        fs::create_dir_all(&config.data_dir).map_err(|source| data_dir_error(config, source))?;
        let db = Database::connect(&config.database_url(), config.db_max_connections).await?;
        db.migrate().await?;
        let views = LicenseViews::new(db.clone());
        let licenses = Arc::new(LicenseService::new(license_event_store(&db), views.clone()));
        Ok(Self { db, views, licenses })
    }
}

fn data_dir_error(config: &Config, source: io::Error) -> StartupError {
    StartupError::DataDir { path: config.data_dir.display().to_string(), source }
}

/// `keyledger audit verify`: recomputes the hash chains of the log.
pub async fn verify_log(config: &Config, license_id: Option<&str>) -> Result<VerifyReport, StartupError> {
    let core = Core::open(config).await?;
    let report = EventLog::new(core.db.clone()).verify(license_id).await;
    core.db.close().await;
    Ok(report?)
}

/// `keyledger projections rebuild`: rebuilds every read model from the
/// log and returns how many licenses it replayed.
pub async fn rebuild_projections(config: &Config) -> Result<usize, StartupError> {
    let core = Core::open(config).await?;
    let rebuilt = core.licenses.rebuild_views().await.map_err(|e| StartupError::Projection(e.to_string()));
    core.db.close().await;
    rebuilt
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    expiry_sweep: Option<std::time::Duration>,
    /// Set when this start generated the operator token, so it can be shown once.
    pub new_operator_token: Option<String>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let Core { db, views, licenses } = Core::open(&config).await?;
        let caught_up = licenses.catch_up_views().await.map_err(|e| StartupError::Projection(e.to_string()))?;
        if caught_up > 0 {
            tracing::warn!(licenses = caught_up, "read models were behind the event log and have been caught up");
        }

        let (operator_token, new_operator_token) = match &config.operator_token {
            Some(token) => (token.trim().to_owned(), None),
            None => operator_token_from_file(&config.data_dir).map_err(|e| data_dir_error(&config, e))?,
        };
        if operator_token.len() < MIN_SECRET_LEN || operator_token.starts_with(KEY_PREFIX) {
            return Err(StartupError::WeakOperatorToken);
        }
        let machine_secret = match &config.machine_id_secret {
            Some(secret) if secret.len() < MIN_SECRET_LEN => return Err(StartupError::WeakMachineIdSecret),
            Some(secret) => secret.clone(),
            None => db.shared_secret(MACHINE_SECRET_NAME, &random_token(64)).await?,
        };

        let tenancy = TenancyStore::new(db.clone());
        let state = AppState {
            licenses,
            views,
            log: EventLog::new(db.clone()),
            auth: Authenticator::new(&operator_token, tenancy.clone()),
            tenancy,
            machine_secret: machine_secret.into_bytes().into(),
            heartbeat_interval: chrono::Duration::seconds(config.heartbeat_interval_secs.into()),
            db,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
        let expiry_sweep =
            (config.expiry_sweep_secs > 0).then(|| std::time::Duration::from_secs(config.expiry_sweep_secs.into()));
        Ok(Self { listener, state, expiry_sweep, new_operator_token })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves (and sweeps expiries) until `shutdown` resolves, then
    /// finishes in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let db = self.state.db.clone();
        let sweeper = self
            .expiry_sweep
            .map(|interval| tokio::spawn(expiry::run(self.state.licenses.clone(), self.state.views.clone(), interval)));
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        db.close().await;
        served
    }
}

/// Reads the operator token from the data directory, creating it (mode
/// 0600) on first start. Returns the token, and the token again if it is
/// new so the caller can show it once.
fn operator_token_from_file(data_dir: &Path) -> io::Result<(String, Option<String>)> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_owned(), None)),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let token = format!("{OPERATOR_PREFIX}{}", random_token(43));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    Ok((token.clone(), Some(token)))
}
