//! The scenarios: prepare data through the public API, run the load
//! against keyledger and against its baselines, report with ratios.

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::load::{self, Report};
use crate::{baseline, this_binary, Scenario};

pub(crate) const OPERATOR: &str = "bench-operator-token-0123456789";
/// Every keyledger process of a run seals and opens its keys with this,
/// so a database kept by one run (`--keep-database`) opens in another.
pub(crate) const MASTER_KEY: &str = "6b65796c65646765722d62656e63682d6d61737465722d6b65792d3031323334";

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "keyledger-bench", about = "Throughput and latency of keyledger against raw baselines, in one run")]
pub struct Options {
    #[arg(value_enum)]
    pub(crate) scenario: Scenario,
    /// Seconds of load per measured target.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: usize,
    /// Use PostgreSQL (a fresh database on this admin URL) instead of SQLite.
    #[arg(long)]
    pub(crate) postgres: bool,
    #[arg(long, env = "KEYLEDGER_TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub(crate) postgres_admin_url: String,
    /// Licenses prepared. validate, mixed and dialects: 2,000, 4 or 5
    /// machines each; activate: 60,000 fresh ones; lag: 40,000 fresh ones;
    /// webhooks: 150,000 fresh ones, which its three activation phases
    /// share.
    #[arg(long)]
    pub(crate) licenses: Option<usize>,
    /// history: events on the long license. replay: events (each a new
    /// license) to rebuild from.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: usize,
    /// scale: measure the data set already in this database (one an
    /// earlier run kept) instead of building one.
    #[arg(long)]
    pub(crate) reuse_database: Option<String>,
    /// Keep the PostgreSQL databases (and the SQLite files) this run made,
    /// and print where they are.
    #[arg(long)]
    pub(crate) keep_database: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub(crate) json: Option<std::path::PathBuf>,
}

/// A child process listening on `base`, killed when dropped.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) addr: SocketAddr,
}

pub(crate) struct Bench {
    pub(crate) options: Options,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) client: reqwest::Client,
    databases: Vec<String>,
}

pub async fn run(options: Options) -> std::process::ExitCode {
    let bench = Bench {
        dir: tempfile::tempdir().expect("temp dir"),
        client: reqwest::Client::builder().pool_max_idle_per_host(1024).build().expect("client"),
        databases: Vec::new(),
        options,
    };
    let mut bench = bench;
    let result = match bench.options.scenario {
        Scenario::Validate => validate(&mut bench).await,
        Scenario::Activate => activate(&mut bench).await,
        Scenario::History => history(&mut bench).await,
        Scenario::Mixed => crate::mixed::run(&mut bench).await,
        Scenario::Replay => crate::replay::run(&mut bench).await,
        Scenario::Lag => crate::lag::run(&mut bench).await,
        Scenario::Calibrate => crate::calibrate::run(&mut bench).await,
        Scenario::Webhooks => crate::webhooks::run(&mut bench).await,
        Scenario::Dialects => crate::dialects::run(&mut bench).await,
        Scenario::Search => crate::search::run(&mut bench).await,
        Scenario::Panel => crate::panel::run(&mut bench).await,
        Scenario::Scale => crate::scale::run(&mut bench).await,
    };
    bench.drop_databases().await;
    if bench.options.keep_database {
        // The SQLite files live in the run's directory: keep it too.
        let kept = std::mem::replace(&mut bench.dir, tempfile::tempdir().expect("temp dir"));
        eprintln!("kept: {} and the databases {:?}", kept.keep().display(), bench.databases);
    }
    match result {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).expect("report serialises");
            println!("{text}");
            if let Some(path) = &bench.options.json {
                std::fs::write(path, &text).expect("write the JSON report");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}

impl Bench {
    pub(crate) fn backend(&self) -> &'static str {
        if self.options.postgres {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// A fresh database for one server of this run.
    pub(crate) async fn database(&mut self, name: &str) -> Result<String, String> {
        if !self.options.postgres {
            return Ok(format!("sqlite://{}/{name}.db", self.dir.path().display()));
        }
        let db_name = format!("kltest_bench_{name}_{}", std::process::id());
        let admin = sqlx::PgPool::connect(&self.options.postgres_admin_url).await.map_err(|e| e.to_string())?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(&admin).await.map_err(|e| e.to_string())?;
        admin.close().await;
        self.databases.push(db_name.clone());
        let (server, _) = self.options.postgres_admin_url.rsplit_once('/').ok_or("admin URL has no database")?;
        Ok(format!("{server}/{db_name}"))
    }

    async fn drop_databases(&self) {
        if self.options.keep_database {
            return;
        }
        let Ok(admin) = sqlx::PgPool::connect(&self.options.postgres_admin_url).await else { return };
        for db_name in &self.databases {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(&admin).await;
        }
    }

    pub(crate) async fn keyledger(&mut self, extra_env: &[(&str, &str)]) -> Result<Served, String> {
        let database_url = self.database("keyledger").await?;
        self.keyledger_on(&database_url, extra_env).await
    }

    /// A keyledger server on an existing database: a second process, or a
    /// restart.
    pub(crate) async fn keyledger_on(&self, database_url: &str, extra_env: &[(&str, &str)]) -> Result<Served, String> {
        let (command, addr) = self.keyledger_command(database_url, extra_env);
        self.start(command, addr, "/health").await
    }

    /// A keyledger server on an existing database, spawned and not waited
    /// for: for timing its start-up.
    pub(crate) fn keyledger_spawned(&self, database_url: &str, extra_env: &[(&str, &str)]) -> Result<Served, String> {
        let (mut command, addr) = self.keyledger_command(database_url, extra_env);
        let child = command.stdout(Stdio::null()).kill_on_drop(true).spawn().map_err(|e| e.to_string())?;
        Ok(Served { child, base: format!("http://{addr}"), addr })
    }

    fn keyledger_command(&self, database_url: &str, extra_env: &[(&str, &str)]) -> (Command, SocketAddr) {
        let addr = free_addr();
        let mut command = Command::new(this_binary());
        command
            .arg(crate::SERVE_KEYLEDGER)
            .env("KEYLEDGER_LISTEN", addr.to_string())
            .env("KEYLEDGER_DATA_DIR", self.dir.path().join("keyledger-data"))
            .env("KEYLEDGER_DATABASE_URL", database_url)
            .env("KEYLEDGER_OPERATOR_TOKEN", OPERATOR)
            .env("KEYLEDGER_MASTER_KEY", MASTER_KEY)
            // One address sends the whole load; a scenario that measures
            // the limits turns them on with its extra variables. For the
            // same reason the cap on one address's open connections is
            // raised past the 1,024 an open-loop phase may hold when
            // answers slow down (at 256, such a phase was answered 503).
            .env("KEYLEDGER_RATE_LIMITS", "off")
            .env("KEYLEDGER_MAX_CONNECTIONS_PER_IP", "2048")
            .env("KEYLEDGER_LOG", "warn");
        for (name, value) in extra_env {
            command.env(name, value);
        }
        (command, addr)
    }

    pub(crate) async fn baseline(&mut self, kind: baseline::Kind) -> Result<Served, String> {
        let addr = free_addr();
        let mut command = Command::new(this_binary());
        command.args([crate::BASELINE, "--kind"]).arg(kind.name()).arg("--listen").arg(addr.to_string());
        if kind != baseline::Kind::Static {
            let url = self.database(&kind.name().replace('-', "_")).await?;
            command.arg("--database-url").arg(url);
        }
        self.start(command, addr, "").await
    }

    async fn start(&self, mut command: Command, addr: SocketAddr, probe: &str) -> Result<Served, String> {
        let mut child = command.stdout(Stdio::null()).kill_on_drop(true).spawn().map_err(|e| e.to_string())?;
        let base = format!("http://{addr}");
        // Long enough for a server loading a million licenses on a busy
        // machine; a server that exits is reported at once.
        for _ in 0..12_000 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{addr} exited before answering: {status}"));
            }
            let up = if probe.is_empty() {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            } else {
                self.client.get(format!("{base}{probe}")).send().await.is_ok_and(|r| r.status().is_success())
            };
            if up {
                return Ok(Served { child, base, addr });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{addr} did not come up"))
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs(self.options.seconds)
    }
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> Result<Value, String> {
    let mut request = client.post(url).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Waits until `server`'s background consumers have caught up with the
/// log (every lag `/health` reports under a few hundred events), so a
/// measured phase doesn't share the machine with the backlog a bulk setup
/// left them. Gives up after five minutes and says so.
pub(crate) async fn settle(client: &reqwest::Client, server: &Served) {
    const CAUGHT_UP: i64 = 500;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        let health: Option<Value> = match client.get(format!("{}/health", server.base)).send().await {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        let lags: Vec<i64> = health
            .as_ref()
            .and_then(|health| health["consumers"].as_array())
            .map(|consumers| consumers.iter().filter_map(|c| c["lagEvents"].as_i64()).collect())
            .unwrap_or_default();
        if health.is_some() && lags.iter().all(|lag| *lag < CAUGHT_UP) {
            eprintln!("consumers caught up after {:.1} s", started.elapsed().as_secs_f64());
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("consumers still behind after five minutes; measuring anyway");
}

/// A tenant user's key on `server`.
pub(crate) async fn user_key(client: &reqwest::Client, server: &Served) -> Result<String, String> {
    let tenant =
        post(client, &format!("{}/api/v1/tenants", server.base), Some(OPERATOR), &json!({"name": "Bench"})).await?;
    let admin = tenant["adminKey"].as_str().ok_or("no admin key")?;
    let user = post(client, &format!("{}/api/v1/api-keys", server.base), Some(admin), &json!({"role": "user"})).await?;
    Ok(user["key"].as_str().ok_or("no user key")?.to_owned())
}

/// Generates `count` licenses with `body`, 64 at a time; returns their keys.
pub(crate) async fn generate(
    client: &reqwest::Client,
    server: &Served,
    key: &str,
    count: usize,
    body: Value,
) -> Result<Vec<String>, String> {
    Ok(generate_with_ids(client, server, key, count, body).await?.into_iter().map(|(key, _)| key).collect())
}

/// Like [`generate`], with each license's id beside its key.
pub(crate) async fn generate_with_ids(
    client: &reqwest::Client,
    server: &Served,
    key: &str,
    count: usize,
    body: Value,
) -> Result<Vec<(String, String)>, String> {
    use futures::StreamExt;
    let url = format!("{}/api/v1/licenses/generate", server.base);
    let made: Vec<Result<Value, String>> = futures::stream::iter(0..count)
        .map(|_| post(client, &url, Some(key), &body))
        .buffer_unordered(64)
        .collect()
        .await;
    made.into_iter()
        .map(|license| {
            let license = license?;
            let key = license["licenseKey"].as_str().ok_or("no license key")?.to_owned();
            let id = license["id"].as_str().ok_or("no license id")?.to_owned();
            Ok((key, id))
        })
        .collect()
}

pub(crate) fn expect_field(answer: Result<Value, String>, field: &str, value: &Value) -> load::Outcome {
    let answer = answer?;
    if &answer[field] == value {
        Ok(())
    } else {
        Err(format!("unexpected answer: {answer}"))
    }
}

/// Load against a baseline's `/validate` with a validate-shaped body.
pub(crate) async fn baseline_load(bench: &Bench, name: &str, served: &Served) -> Report {
    load::run_raw(name, served.addr, bench.options.connections, bench.duration(), move |connection, n| {
        let row = (n as i64 * 7919 + connection as i64) % baseline::ROWS + 1;
        let body = format!(r#"{{"licenseKey":"ABCD-EFGH-JKMN-2345","machineId":"c{connection}-{n}","row":{row}}}"#);
        Some(load::Call { path: "/validate".to_owned(), body: body.into_bytes(), expect: br#""isValid":true"# })
    })
    .await
}

pub(crate) fn ratio(a: &Report, b: &Report) -> f64 {
    if b.throughput == 0.0 {
        0.0
    } else {
        a.throughput / b.throughput
    }
}

pub(crate) fn print_table(reports: &[&Report]) {
    eprintln!(
        "{:<34} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "target", "conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for r in reports {
        eprintln!(
            "{:<34} {:>6} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8}",
            r.name, r.connections, r.throughput, r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms, r.errors
        );
        if let Some(error) = &r.first_error {
            eprintln!("    first error: {error}");
        }
    }
}

/// The read path's baselines, one after the other: the signed static
/// answer, and the same with one primary-key SELECT.
pub(crate) async fn read_baselines(bench: &mut Bench) -> Result<(Report, Report), String> {
    let static_server = bench.baseline(baseline::Kind::Static).await?;
    let signed_static = baseline_load(bench, "baseline: signed, no storage", &static_server).await;
    drop(static_server);
    let select_server = bench.baseline(baseline::Kind::Select).await?;
    let select = baseline_load(bench, "baseline: one primary-key SELECT", &select_server).await;
    drop(select_server);
    Ok((signed_static, select))
}

/// `validate`: activated licenses on many machines, validate calls only.
async fn validate(bench: &mut Bench) -> Result<Value, String> {
    let database_url = bench.database("keyledger").await?;
    let server = bench.keyledger_on(&database_url, &[]).await?;
    let key = user_key(&bench.client, &server).await?;
    let licenses =
        generate(&bench.client, &server, &key, bench.options.licenses.unwrap_or(2_000), json!({"maxActivations": 5}))
            .await?;
    let activate_url = format!("{}/api/v1/licenses/activate", server.base);
    for chunk in licenses.chunks(8) {
        let bodies: Vec<Value> = chunk
            .iter()
            .flat_map(|license| (0..5).map(move |m| json!({"licenseKey": license, "machineId": format!("m{m}")})))
            .collect();
        let calls = bodies.iter().map(|body| post(&bench.client, &activate_url, None, body));
        for outcome in futures::future::join_all(calls).await {
            outcome?;
        }
    }
    settle(&bench.client, &server).await;
    let licenses = Arc::new(licenses);
    // The signed static baseline runs before keyledger's runs as well as
    // after them, and the ratio takes the mean of the two: the machine
    // drifts within a run as much as keyledger's runs do.
    let static_server = bench.baseline(baseline::Kind::Static).await?;
    let static_before = baseline_load(bench, "baseline: signed, no storage (1)", &static_server).await;
    drop(static_server);
    let keyledger = validate_load(bench, "keyledger validate", &server, licenses.clone()).await;
    drop(server);
    // The same with rate limits on, at a limit the load never reaches, and
    // off once more: the machine drifts within a run, so on and off are
    // each the mean of a run before and a run after the other.
    let limited_env = [("KEYLEDGER_RATE_LIMITS", "on"), ("KEYLEDGER_RATE_LIMIT_CLIENT_PER_MINUTE", "1000000000")];
    let server = bench.keyledger_on(&database_url, &limited_env).await?;
    let limited = validate_load(bench, "keyledger validate, limits on", &server, licenses.clone()).await;
    let limited_again = validate_load(bench, "keyledger validate, limits on (2)", &server, licenses.clone()).await;
    drop(server);
    let server = bench.keyledger_on(&database_url, &[]).await?;
    let off_again = validate_load(bench, "keyledger validate (2)", &server, licenses).await;
    drop(server);
    let (signed_static, select) = read_baselines(bench).await?;
    print_table(&[&keyledger, &limited, &limited_again, &off_again, &static_before, &signed_static, &select]);
    // Validate's own figure is the mean of its two runs without limits,
    // and the static baseline's the mean of its runs before and after,
    // for the same drift: a single run read up to 15% above or below the
    // other in one run of this scenario.
    let mut validate = keyledger.clone();
    validate.throughput = (keyledger.throughput + off_again.throughput) / 2.0;
    let mut static_mean = signed_static.clone();
    static_mean.throughput = (static_before.throughput + signed_static.throughput) / 2.0;
    let (vs_static, vs_select) = (ratio(&validate, &static_mean), ratio(&validate, &select));
    let limits_on_over_off =
        (limited.throughput + limited_again.throughput) / (keyledger.throughput + off_again.throughput).max(1.0);
    eprintln!(
        "validate (mean of runs 1 and 2) / signed static (mean of its two runs) = {vs_static:.2} (target >= 0.7); validate / SELECT = {vs_select:.2} (target >= 2.0); \
         limits on / off = {limits_on_over_off:.2} (target >= 0.9)"
    );
    Ok(json!({
        "scenario": "validate", "backend": bench.backend(),
        "reports": [keyledger, limited, limited_again, off_again, static_before, signed_static, select],
        "ratios": {"validate_over_static": vs_static, "validate_over_select": vs_select, "limits_on_over_off": limits_on_over_off},
        "targets_met": {"validate_over_static": vs_static >= 0.7, "validate_over_select": vs_select >= 2.0, "limits_on_over_off": limits_on_over_off >= 0.9},
    }))
}

/// Validate calls on the prepared licenses' machines, spread over them.
pub(crate) async fn validate_load(bench: &Bench, name: &str, server: &Served, licenses: Arc<Vec<String>>) -> Report {
    load::run_raw(name, server.addr, bench.options.connections, bench.duration(), move |connection, n| {
        let pick = (n as usize * 7919 + connection * 104_729) % (licenses.len() * 5);
        let body = format!(r#"{{"licenseKey":"{}","machineId":"m{}"}}"#, licenses[pick / 5], pick % 5);
        let path = "/api/v1/licenses/validate".to_owned();
        Some(load::Call { path, body: body.into_bytes(), expect: br#""isValid":true"# })
    })
    .await
}

/// `activate`: fresh licenses, each activated once.
async fn activate(bench: &mut Bench) -> Result<Value, String> {
    let server = bench.keyledger(&[]).await?;
    let key = user_key(&bench.client, &server).await?;
    let licenses =
        Arc::new(generate(&bench.client, &server, &key, bench.options.licenses.unwrap_or(60_000), json!({})).await?);
    settle(&bench.client, &server).await;
    let connections = bench.options.connections;
    let keyledger =
        load::run_raw("keyledger activate", server.addr, connections, bench.duration(), move |connection, n| {
            // Each connection takes its own licenses; it stops when they run out.
            let index = n as usize * connections + connection;
            let body = format!(r#"{{"licenseKey":"{}","machineId":"bench-machine"}}"#, licenses.get(index)?);
            let path = "/api/v1/licenses/activate".to_owned();
            Some(load::Call { path, body: body.into_bytes(), expect: br#""success":true"# })
        })
        .await;
    drop(server);
    let insert_server = bench.baseline(baseline::Kind::Insert).await?;
    let insert = baseline_load(bench, "baseline: one single-row INSERT", &insert_server).await;
    drop(insert_server);
    let smallest_server = bench.baseline(baseline::Kind::SmallestInsert).await?;
    let smallest =
        baseline_load(bench, "baseline: the smallest INSERT (serial key, three short columns)", &smallest_server).await;
    drop(smallest_server);
    print_table(&[&keyledger, &insert, &smallest]);
    let vs_insert = ratio(&keyledger, &insert);
    let vs_smallest = ratio(&keyledger, &smallest);
    let ran_out = keyledger.seconds + 0.5 < bench.options.seconds as f64;
    eprintln!(
        "activate / INSERT = {vs_insert:.2} (target >= 0.5 on PostgreSQL); activate / smallest INSERT = \
         {vs_smallest:.2} (target >= 0.4 on PostgreSQL at 64 connections){}",
        if ran_out { "; the prepared licenses ran out early: raise --licenses" } else { "" }
    );
    Ok(json!({
        "scenario": "activate", "backend": bench.backend(), "reports": [keyledger, insert, smallest],
        "ratios": {"activate_over_insert": vs_insert, "activate_over_smallest_insert": vs_smallest},
        "targets_met": {"activate_over_insert": vs_insert >= 0.5, "activate_over_smallest_insert": vs_smallest >= 0.4},
        "licenses_ran_out": ran_out,
    }))
}

/// `history`: command latency on a license with many events against a
/// fresh one. Every validate appends a heartbeat (interval 0), so each
/// request loads the license and appends to it.
async fn history(bench: &mut Bench) -> Result<Value, String> {
    let server = bench.keyledger(&[("KEYLEDGER_HEARTBEAT_INTERVAL_SECS", "0")]).await?;
    let key = user_key(&bench.client, &server).await?;
    let licenses = generate(&bench.client, &server, &key, 2, json!({})).await?;
    let activate_url = format!("{}/api/v1/licenses/activate", server.base);
    let validate_url = format!("{}/api/v1/licenses/validate", server.base);
    for license in &licenses {
        post(&bench.client, &activate_url, None, &json!({"licenseKey": license, "machineId": "m"})).await?;
    }
    let (fresh, long) = (licenses[0].clone(), licenses[1].clone());
    eprintln!("writing {} events to the long license...", bench.options.events);
    let body = json!({"licenseKey": long, "machineId": "m"});
    for _ in 0..bench.options.events {
        post(&bench.client, &validate_url, None, &body).await?;
    }
    let measure = |name: &'static str, license: String| {
        let (client, url) = (bench.client.clone(), validate_url.clone());
        load::run(name, 1, bench.duration() / 2, move |_, _| {
            let body = json!({"licenseKey": license, "machineId": "m"});
            let (client, url) = (client.clone(), url.clone());
            Some(async move { expect_field(post(&client, &url, None, &body).await, "isValid", &json!(true)) })
        })
    };
    let fresh_report = measure("command on a fresh license", fresh).await;
    let long_report = measure("command on the long license", long).await;
    print_table(&[&fresh_report, &long_report]);
    let slowdown = if fresh_report.p50_ms > 0.0 { long_report.p50_ms / fresh_report.p50_ms } else { 0.0 };
    eprintln!("long / fresh p50 latency = {slowdown:.2} (target <= 1.5) with {} events", bench.options.events);
    Ok(json!({
        "scenario": "history", "backend": bench.backend(), "events": bench.options.events,
        "reports": [fresh_report, long_report],
        "ratios": {"long_over_fresh_p50": slowdown},
        "targets_met": {"long_over_fresh_p50": slowdown <= 1.5},
    }))
}
