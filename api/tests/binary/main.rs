//! Tests of the real `keyledger` binary, started as a child process the
//! way an operator runs it.

mod crash;
mod data_files;
mod rebuild;
mod webhooks;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const OPERATOR: &str = "crash-test-operator-token-0123456789";

pub struct Server {
    pub child: Child,
    pub base: String,
}

pub fn keyledger(data_dir: &std::path::Path, database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    command.env("KEYLEDGER_OPERATOR_TOKEN", OPERATOR);
    configure(command, data_dir, database_url)
}

/// Runs a `keyledger` command to its end; a failure panics with `failed`
/// and what the command wrote to stderr.
pub fn run_to_end(data_dir: &std::path::Path, database_url: &str, args: &[&str], failed: &str) {
    let output = keyledger(data_dir, database_url).args(args).stderr(Stdio::piped()).output().unwrap();
    assert!(output.status.success(), "{failed}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The settings every test server gets: its data, its database, quiet logs.
pub fn configure(mut command: Command, data_dir: &std::path::Path, database_url: &str) -> Command {
    command
        .env("KEYLEDGER_DATA_DIR", data_dir)
        .env("KEYLEDGER_DATABASE_URL", database_url)
        // The load comes from one address, which limits would block.
        .env("KEYLEDGER_RATE_LIMITS", "off")
        .env("KEYLEDGER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

pub async fn start(data_dir: &std::path::Path, database_url: &str) -> Server {
    start_command(keyledger(data_dir, database_url)).await
}

/// Runs `command` on a free port and waits until it answers `/health`.
pub async fn start_command(mut command: Command) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = command.env("KEYLEDGER_LISTEN", format!("127.0.0.1:{port}")).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/health")).await.is_ok_and(|r| r.status().is_success()) {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not left running behind the failed test.
    child.kill().ok();
    child.wait().ok();
    panic!("keyledger did not come up");
}

pub async fn post(client: &reqwest::Client, url: String, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null), // the server died under us
    }
}

/// A new tenant on the server at `base`: its admin key and a user key.
pub async fn tenant_keys(client: &reqwest::Client, base: &str) -> (String, String) {
    let body = serde_json::json!({"name": "Acme"});
    let (_, tenant) = post(client, format!("{base}/api/v1/tenants"), Some(OPERATOR), body).await;
    let admin = tenant["adminKey"].as_str().expect("a tenant's admin key").to_owned();
    let body = serde_json::json!({"role": "user"});
    let (_, user) = post(client, format!("{base}/api/v1/api-keys"), Some(&admin), body).await;
    (admin, user["key"].as_str().expect("a user key").to_owned())
}

/// A server on a fresh database of `backend` in a data directory of its
/// own, with a tenant: what the crash tests start from.
pub struct Fresh {
    pub data_dir: tempfile::TempDir,
    pub database_url: String,
    pub server: Server,
    pub client: reqwest::Client,
    /// A user key of the tenant.
    pub user: String,
}

pub async fn fresh_server(backend: &str) -> Fresh {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = crash::fresh_database(backend, data_dir.path()).await;
    let server = start(data_dir.path(), &database_url).await;
    let client = reqwest::Client::new();
    let (_, user) = tenant_keys(&client, &server.base).await;
    Fresh { data_dir, database_url, server, client, user }
}
