//! Helpers for the end-to-end tests: start the real keyledger server on
//! port 0 against a fresh database of either backend, and talk to it over
//! HTTP like any client would.
//!
//! PostgreSQL tests create a database `kltest_<uuid>` on the server named
//! by `KEYLEDGER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drop it when the
//! test ends, passed or failed; `scripts/test` drops what a killed run
//! left behind before each run.
//!
//! `KEYLEDGER_TEST_LOG` set to a tracing filter (`debug`,
//! `keyledger_workers=debug,info`, ...) prints the logs of the servers the
//! tests start, with each test's output (`--nocapture` to see them for
//! tests that pass).
//!
//! Waiting for something the servers do in the background is
//! [`eventually`]'s job: no fixed sleeps for what can be observed.

mod nats;
pub mod raw;
pub mod receiver;

pub use nats::{stream_messages, NatsServer, StreamedEvent};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyledger_api::{Application, Config};
use keyledger_eventlog::{on_pool, Database};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";
/// Every test server's master key, so servers sharing a database agree.
pub const MASTER_KEY: &str = "6b65796c65646765722d746573742d6d61737465722d6b65792d303132333435";
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn name(backend: Backend)` as two tests,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The same database the server uses, for looking at the log directly.
    pub db: Database,
    pub database_url: String,
    pub data_dir: TempDir,
    /// The test's PostgreSQL database, held by every app and server on it
    /// (dropped last, after the pool above).
    database: Option<Arc<TestDatabase>>,
}

/// A tenant as created through the API.
pub struct TestTenant {
    pub id: String,
    pub admin_key: String,
    pub admin_key_id: String,
}

/// A tenant user's key.
pub struct TestUser {
    pub id: String,
    pub key: String,
    pub user_id: String,
}

/// The usual starting point: a server with one tenant, one of its users,
/// and a license that user generated.
pub struct Licensed {
    pub app: TestApp,
    pub tenant: TestTenant,
    pub user: TestUser,
    /// The generate response (seed 000's FastrLicenseResponse).
    pub license: Value,
    pub key: String,
    pub id: String,
}

impl Licensed {
    pub async fn new(backend: Backend, generate: Value) -> Self {
        let app = TestApp::spawn(backend).await;
        let tenant = app.tenant("Acme").await;
        let user = app.user(&tenant, "u").await;
        let license = app.generate(&user.key, generate).await;
        let key = license["licenseKey"].as_str().expect("licenseKey").to_owned();
        let id = license["id"].as_str().expect("id").to_owned();
        Self { app, tenant, user, license, key, id }
    }
}

/// Stops a server started with [`TestApp::spawn_stoppable`]. Dropped
/// unused, the server runs on until the test ends.
pub struct Stop {
    signal: Option<tokio::sync::oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Stop {
    /// Asks the server to stop, as SIGTERM does, and waits until it has.
    pub async fn stop(mut self) {
        if let Some(signal) = self.signal.take() {
            let _ = signal.send(());
        }
        (&mut self.running).await.expect("the server task").expect("the server stopped cleanly");
    }
}

/// Answer of a request: status and JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_stoppable(backend, adjust).await.0
    }

    /// A second server on this one's database, as another process would be.
    pub async fn another_server(&self) -> Self {
        self.another_server_with(|_| {}).await
    }

    /// The same with its configuration changed by `adjust`.
    pub async fn another_server_with(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        self.another_stoppable_server_with(adjust).await.0
    }

    /// A second server on this one's database that stops gracefully when
    /// the returned [`Stop`] is used.
    pub async fn another_stoppable_server_with(&self, adjust: impl FnOnce(&mut Config)) -> (Self, Stop) {
        let database = self.database.clone();
        Self::start_stoppable(Some(self.database_url.clone()), database, adjust).await
    }

    /// The configuration a server on this app's database would get.
    pub fn config(&self) -> Config {
        let mut config = test_config(self.data_dir.path().to_path_buf());
        config.database_url = Some(self.database_url.clone());
        config
    }

    /// A server that stops gracefully when the returned [`Stop`] is used,
    /// as on SIGTERM.
    pub async fn spawn_stoppable(backend: Backend, adjust: impl FnOnce(&mut Config)) -> (Self, Stop) {
        let (database_url, database) = match backend {
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                (Some(database.url.clone()), Some(Arc::new(database)))
            }
            Backend::Sqlite => (None, None),
        };
        Self::start_stoppable(database_url, database, adjust).await
    }

    /// A server on SQLite in `data_dir`, as a data directory written
    /// earlier (by another release) holds it.
    pub async fn spawn_in(data_dir: TempDir) -> Self {
        Self::start_in(data_dir, None, None, |_| {}).await.0
    }

    async fn start_stoppable(
        database_url: Option<String>,
        database: Option<Arc<TestDatabase>>,
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, Stop) {
        Self::start_in(tempfile::tempdir().expect("temp dir"), database_url, database, adjust).await
    }

    /// Starts a server; `database` is the test database it runs on, kept
    /// until the server has stopped (or the test's runtime has dropped it)
    /// and every app on the database is gone.
    async fn start_in(
        data_dir: TempDir,
        database_url: Option<String>,
        database: Option<Arc<TestDatabase>>,
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, Stop) {
        let mut config = test_config(data_dir.path().to_path_buf());
        config.database_url = database_url;
        adjust(&mut config);
        let database_url = config.database_url();
        let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
        let app = Application::build(config).await.expect("server starts");
        // As a balancer waits for `/health`: tests that look at how a
        // license was found (memory or store) need the whole view.
        app.validation_view_loaded().await;
        let base = format!("{scheme}://{}", app.local_addr());
        let (signal, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_database = database.clone();
        let running = tokio::spawn(async move {
            let stopped = app
                .run_until(async move {
                    if stopped.await.is_err() {
                        // Nobody will ask it to stop: it runs until the test ends.
                        std::future::pending::<()>().await;
                    }
                })
                .await;
            drop(server_database);
            stopped
        });
        let db = Database::connect(&database_url, 4).await.expect("test connection to the server's database");
        let app = Self { base, client: reqwest::Client::new(), db, database_url, data_dir, database };
        (app, Stop { signal: Some(signal), running })
    }

    pub async fn request(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request reaches the server")).await
    }

    /// Sends a raw body with a JSON content type, for malformed input.
    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: &'static str) -> Reply {
        self.send_raw(Method::POST, path, key, "application/json", body.into()).await
    }

    /// Sends `body` as it is, with `content_type` (none if empty).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        into_reply(request.send().await.expect("request reaches the server")).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Reply {
        self.request(Method::POST, path, key, Some(body)).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.request(Method::GET, path, key, None).await
    }

    pub async fn tenant(&self, name: &str) -> TestTenant {
        let reply = self.post("/api/v1/tenants", Some(OPERATOR_TOKEN), json!({ "name": name })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        TestTenant {
            id: reply.body["id"].as_str().unwrap().to_owned(),
            admin_key: reply.body["adminKey"].as_str().unwrap().to_owned(),
            admin_key_id: reply.body["adminKeyId"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn user(&self, tenant: &TestTenant, name: &str) -> TestUser {
        let reply =
            self.post("/api/v1/api-keys", Some(&tenant.admin_key), json!({ "role": "user", "name": name })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        TestUser {
            id: reply.body["id"].as_str().unwrap().to_owned(),
            key: reply.body["key"].as_str().unwrap().to_owned(),
            user_id: reply.body["userId"].as_str().unwrap().to_owned(),
        }
    }

    /// Generates a license with `body` and returns the FastrLicenseResponse.
    pub async fn generate(&self, key: &str, body: Value) -> Value {
        let reply = self.post("/api/v1/fastrLicense/generate", Some(key), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    pub async fn activate(&self, license_key: &str, machine_id: &str) -> Reply {
        let body = json!({ "licenseKey": license_key, "machineId": machine_id, "machineName": "test-machine" });
        self.post("/api/v1/fastrLicense/activate", None, body).await
    }

    pub async fn validate(&self, license_key: &str, machine_id: &str) -> Reply {
        let body = json!({ "licenseKey": license_key, "machineId": machine_id });
        self.post("/api/v1/fastrLicense/validate", None, body).await
    }

    /// How many events of `event_type` the log holds for the license.
    pub async fn count_events(&self, license_id: &str, event_type: &str) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM events WHERE aggregate_id = $1 AND event_type = $2";
        on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(license_id).bind(event_type).fetch_one(pool).await)
            .expect("count events")
    }

    /// Every event id in the log, in no particular order.
    pub async fn all_event_ids(&self) -> Vec<String> {
        const SQL: &str = "SELECT event_id FROM events";
        on_pool!(&self.db, pool => sqlx::query_scalar(SQL).fetch_all(pool).await).expect("read event ids")
    }

    /// Every stored event payload and metadata of the license, as text.
    pub async fn raw_events(&self, license_id: &str) -> Vec<(String, String, String)> {
        const SQL: &str = "SELECT event_type, CAST(payload AS TEXT), CAST(metadata AS TEXT) FROM events WHERE aggregate_id = $1 ORDER BY sequence";
        on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(license_id).fetch_all(pool).await).expect("read events")
    }
}

/// A server on port 0 with the test operator token and a small pool.
pub fn test_config(data_dir: std::path::PathBuf) -> Config {
    install_test_log();
    let mut config = Config::with_defaults(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir);
    config.operator_token = Some(OPERATOR_TOKEN.to_owned());
    config.master_key = Some(MASTER_KEY.to_owned());
    // Tests send thousands of requests from one address; the rate-limit
    // tests turn limits on for themselves.
    config.rate_limits = "off".to_owned();
    config.db_max_connections = 8;
    config
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("response is not JSON ({status}): {text}"))
    };
    Reply { status, body }
}

/// An empty PostgreSQL database of one test, dropped (with whatever is
/// still connected to it) when the last holder lets go of it: every
/// [`TestApp`] on it and every server task running on it. Tasks still
/// running at the end of a test go when its runtime does, so a database
/// shared by several servers is dropped once, after all of them; a test
/// that panics drops it as it unwinds.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> Self {
        let admin_url =
            std::env::var("KEYLEDGER_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let name = format!("kltest_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL for tests is unreachable ({e}); run the suite with scripts/test"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        Self { admin_url, name, url }
    }
}

impl Drop for TestDatabase {
    /// Drop can't wait on a future, and may run on a worker of the test's
    /// runtime as that runtime shuts down: the database is dropped from a
    /// thread of its own, with a small runtime of its own, and waited for,
    /// so that the test (and the run) ends only once it is gone.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropping = std::thread::spawn(move || -> Result<(), String> {
            use sqlx::Connection;
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let drop_it = async {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                };
                match tokio::time::timeout(Duration::from_secs(60), drop_it).await {
                    Ok(dropped) => dropped.map_err(|e| e.to_string()),
                    Err(_) => Err("no answer within a minute".to_owned()),
                }
            })
        });
        // Never panic here: this may run while a failed test unwinds.
        match dropping.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("test database {} was not dropped: {error}", self.name),
            Err(_) => eprintln!("test database {} was not dropped: the dropping thread panicked", self.name),
        }
    }
}

/// `admin_url` with its database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// The longest pause between two looks of [`eventually`].
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Looks with `probe` until it finds something (`Some`), pausing between
/// looks (10 ms at first, doubling up to 200 ms), and returns what it
/// found. Panics naming `what` and `patience` when nothing was found once
/// `patience` has passed; the last look is made at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    look_until(what, patience, || {
        let look = probe();
        async move { look.await.ok_or(None) }
    })
    .await
}

/// [`eventually`] for a probe that says what it saw while the wait goes
/// on (`Err(seen)`): the panic shows what the last look saw.
pub async fn eventually_result<T, F, Fut>(what: &str, patience: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    look_until(what, patience, || {
        let look = probe();
        async move { look.await.map_err(Some) }
    })
    .await
}

async fn look_until<T, F, Fut>(what: &str, patience: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Option<String>>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(10);
    let mut looks = 0u32;
    loop {
        looks += 1;
        let seen = match probe().await {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            match seen {
                Some(seen) => {
                    panic!("gave up waiting for {what} after {patience:?} ({looks} looks); last seen: {seen}")
                }
                None => panic!("gave up waiting for {what} after {patience:?} ({looks} looks)"),
            }
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Installs a tracing subscriber once if `KEYLEDGER_TEST_LOG` holds a
/// filter, so the logs of the servers the tests start are printed. They go
/// through the test harness's capture: shown for a failed test, or for
/// all with `--nocapture`.
fn install_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(filter) = std::env::var("KEYLEDGER_TEST_LOG") else { return };
        let filter = tracing_subscriber::EnvFilter::try_new(&filter)
            .unwrap_or_else(|e| panic!("KEYLEDGER_TEST_LOG={filter} is not a tracing filter: {e}"));
        // Another subscriber installed first (by a test of its own) wins.
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
    });
}

/// A Python of the test suite's virtual environment (`KEYLEDGER_TEST_PYTHON`,
/// set by scripts/test), running `script` from tests/python with `args`.
/// Returns its exit status and what it printed.
pub async fn run_python(script: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let python = std::env::var("KEYLEDGER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let mut command = tokio::process::Command::new(&python);
    command.arg(dir.join(script)).args(args).env("PYTHONPATH", &dir);
    for (name, value) in env {
        command.env(name, value);
    }
    let output =
        command.output().await.unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the suite with scripts/test"));
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if printed.contains("ModuleNotFoundError") {
        panic!(
            "{python} lacks a package the tests need; scripts/test installs tests/python/requirements.txt:\n{printed}"
        );
    }
    (output.status.success(), printed)
}

/// Runs Keygen's published Rust client (tests/keygen-rs-client, keygen-rs
/// 0.14 with its own lock file) with `args`, building it first (once per
/// test process; cargo makes it a no-op when it is up to date): whether it
/// succeeded, and what it printed.
pub async fn keygen_rs_client(args: &[&str]) -> (bool, String) {
    static BUILT: tokio::sync::OnceCell<std::path::PathBuf> = tokio::sync::OnceCell::const_new();
    let binary = BUILT
        .get_or_init(|| async {
            let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keygen-rs-client");
            let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/keygen-rs-client");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let output = tokio::process::Command::new(&cargo)
                .args(["build", "--locked", "--quiet", "--manifest-path"])
                .arg(crate_dir.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .output()
                .await
                .unwrap_or_else(|e| panic!("cannot run {cargo} to build tests/keygen-rs-client: {e}"));
            assert!(
                output.status.success(),
                "tests/keygen-rs-client (keygen-rs 0.14 from crates.io) did not build:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            target.join("debug/keygen-rs-client")
        })
        .await;
    let output = tokio::process::Command::new(binary)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}
