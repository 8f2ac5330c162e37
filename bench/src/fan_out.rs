//! Part of the `webhooks` scenario: four endpoints, all healthy, then
//! four with one answering 500, each run draining a backlog of the same
//! size. The healthy endpoints' rate in the second run, against the first,
//! says whether a failing endpoint holds up the others; the failing one's
//! rows against its failures say whether only failures get rows.
//!
//! Also the row writes a delivery costs, from PostgreSQL's own statistics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyledger_eventlog::{on_pool, Database};
use serde_json::{json, Value};

use crate::lag::closed_loop;
use crate::scenario::{post, Bench};

/// How long a drain may take before the bench gives up on it.
const DRAIN: Duration = Duration::from_secs(120);
/// Endpoints in each run.
const ENDPOINTS: usize = 4;

/// Successful arrivals at each endpoint of the fan-out receiver, by name.
#[derive(Default)]
struct Arrivals {
    ok: HashMap<String, Vec<Instant>>,
    failed: HashMap<String, usize>,
}

type Shared = Arc<Mutex<Arrivals>>;

/// Answers `/fan/{name}`: 500 when the name starts with `failing`, else 200.
async fn receive(State(arrivals): State<Shared>, Path(name): Path<String>) -> StatusCode {
    let mut arrivals = arrivals.lock().expect("lock");
    if name.starts_with("failing") {
        *arrivals.failed.entry(name).or_default() += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    arrivals.ok.entry(name).or_default().push(Instant::now());
    StatusCode::OK
}

/// Row writes (inserts, updates, deletes) PostgreSQL has counted, in the
/// webhook tables and in all tables: None on SQLite, which keeps no such
/// statistics.
pub(crate) async fn row_writes(database_url: &str) -> Result<Option<(i64, i64)>, String> {
    if !database_url.starts_with("postgres") {
        return Ok(None);
    }
    let db = Database::connect(database_url, 1).await.map_err(|e| e.to_string())?;
    const SQL: &str =
        "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del) FILTER (WHERE relname LIKE 'webhook%'), 0)::bigint,
                              COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
                         FROM pg_stat_user_tables";
    let counts: (i64, i64) =
        on_pool!(&db, pool => sqlx::query_as(SQL).fetch_one(pool).await).map_err(|e| e.to_string())?;
    Ok(Some(counts))
}

/// Rows of `webhook_deliveries` an endpoint has.
async fn delivery_rows(database_url: &str, endpoint: &str) -> Result<i64, String> {
    let db = Database::connect(database_url, 1).await.map_err(|e| e.to_string())?;
    const SQL: &str = "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1";
    on_pool!(&db, pool => sqlx::query_scalar(SQL).bind(endpoint).fetch_one(pool).await).map_err(|e| e.to_string())
}

/// What one run of the fan-out came to.
struct Run {
    /// Successful deliveries a second, per healthy endpoint.
    per_endpoint: f64,
    healthy_deliveries: usize,
    seconds: f64,
    /// The failing endpoint's deliveries, and its rows of its own.
    failures: usize,
    /// Attempts the failing endpoint received by the drain's end: its
    /// first attempts and the retries that came due meanwhile.
    failing_arrivals: usize,
    failing_rows: i64,
    healthy_rows: i64,
}

pub(crate) struct FanOut {
    pub url: String,
    arrivals: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FanOut {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FanOut {
    pub(crate) async fn start() -> Result<Self, String> {
        let arrivals: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let url = format!("http://{}/fan", listener.local_addr().map_err(|e| e.to_string())?);
        let app = axum::Router::new().route("/fan/{name}", axum::routing::post(receive)).with_state(arrivals.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, arrivals, task })
    }

    fn healthy(&self, prefix: &str) -> (usize, Option<(Instant, Instant)>) {
        let arrivals = self.arrivals.lock().expect("lock");
        let times: Vec<&Instant> =
            arrivals.ok.iter().filter(|(name, _)| name.starts_with(prefix)).flat_map(|(_, at)| at).collect();
        let span = times.iter().min().zip(times.iter().max()).map(|(first, last)| (**first, **last));
        (times.len(), span)
    }

    fn failures(&self, name: &str) -> usize {
        self.arrivals.lock().expect("lock").failed.get(name).copied().unwrap_or(0)
    }
}

/// Both runs, on `database_url`'s tenant `admin`, activating the next
/// `backlog` licenses of `fresh` for each.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    bench: &mut Bench,
    database_url: &str,
    env: (&[(&str, &str)], &[(&str, &str)]),
    admin: &str,
    fresh: &Arc<Vec<(String, String)>>,
    next: &Arc<AtomicUsize>,
    backlog: usize,
    disable: Vec<String>,
) -> Result<Value, String> {
    let receiver = FanOut::start().await?;
    let healthy = one_run(bench, database_url, env, admin, fresh, next, backlog, &receiver, "all", disable).await?;
    let (healthy, endpoints) = healthy;
    let (failing, _) =
        one_run(bench, database_url, env, admin, fresh, next, backlog, &receiver, "one", endpoints).await?;
    let ratio = if healthy.per_endpoint > 0.0 { failing.per_endpoint / healthy.per_endpoint } else { 0.0 };
    eprintln!(
        "fan-out to {ENDPOINT_IN} endpoints, {backlog} activations each run: all healthy {:.0} deliveries/s an endpoint ({} in {:.2} s); one answering 500: the healthy ones {:.0}/s an endpoint ({} in {:.2} s); ratio {ratio:.2} (target >= 0.9)",
        healthy.per_endpoint,
        healthy.healthy_deliveries,
        healthy.seconds,
        failing.per_endpoint,
        failing.healthy_deliveries,
        failing.seconds,
        ENDPOINT_IN = ENDPOINTS,
    );
    eprintln!(
        "the failing endpoint: {} first attempts failed, {} rows of its own (target: equal), {} attempts received by the drain's end (retries included); the healthy endpoints: {} rows",
        failing.failures, failing.failing_rows, failing.failing_arrivals, failing.healthy_rows
    );
    Ok(json!({
        "endpoints": ENDPOINTS,
        "backlog": backlog,
        "all_healthy_per_endpoint": healthy.per_endpoint,
        "one_failing_healthy_per_endpoint": failing.per_endpoint,
        "healthy_rate_ratio": ratio,
        "failing_deliveries": failing.failures,
        "failing_attempts_received": failing.failing_arrivals,
        "failing_rows": failing.failing_rows,
        "healthy_rows": failing.healthy_rows,
        "targets_met": {
            "healthy_rate_with_one_failing": ratio >= 0.9,
            "retry_rows_equal_failures": failing.failures > 0 && failing.failing_rows == failing.failures as i64,
        },
    }))
}

/// One run: disables `disable`, makes four endpoints (the last answering
/// 500 when `failing` is "one"), writes `backlog` activations with delivery
/// off, then times a delivering server draining them. Returns the run and
/// its endpoints' ids.
#[allow(clippy::too_many_arguments)]
async fn one_run(
    bench: &mut Bench,
    database_url: &str,
    (quiet_env, delivering_env): (&[(&str, &str)], &[(&str, &str)]),
    admin: &str,
    fresh: &Arc<Vec<(String, String)>>,
    next: &Arc<AtomicUsize>,
    backlog: usize,
    receiver: &FanOut,
    failing: &str,
    disable: Vec<String>,
) -> Result<(Run, Vec<String>), String> {
    let quiet = bench.keyledger_on(database_url, quiet_env).await?;
    let client = &bench.client;
    for id in &disable {
        let url = format!("{}/api/v1/webhooks/{id}", quiet.base);
        let answer = client.patch(&url).bearer_auth(admin).json(&json!({"enabled": false})).send().await;
        answer.map_err(|e| e.to_string())?.error_for_status().map_err(|e| e.to_string())?;
    }
    let prefix = format!("{failing}-healthy");
    let failing_name = format!("failing-{failing}");
    let mut endpoints = Vec::new();
    for n in 0..ENDPOINTS {
        let name = if failing == "one" && n == ENDPOINTS - 1 { failing_name.clone() } else { format!("{prefix}-{n}") };
        let hook = json!({"url": format!("{}/{name}", receiver.url), "events": ["license.activated"]});
        let made = post(client, &format!("{}/api/v1/webhooks", quiet.base), Some(admin), &hook).await?;
        endpoints.push(made["id"].as_str().ok_or("no webhook id")?.to_owned());
    }
    let start = next.fetch_add(backlog, Ordering::Relaxed);
    let end = (start + backlog).min(fresh.len());
    let licenses = Arc::new(fresh.get(start..end).unwrap_or_default().to_vec());
    let url = format!("{}/api/v1/licenses/activate", quiet.base);
    let written = closed_loop(bench, "fan-out backlog", DRAIN, &url, licenses, Arc::new(AtomicUsize::new(0))).await;
    let activations = (written.requests - written.errors) as usize;
    drop(quiet);

    let healthy_endpoints = if failing == "one" { ENDPOINTS - 1 } else { ENDPOINTS };
    let expected = activations * healthy_endpoints;
    let server = bench.keyledger_on(database_url, delivering_env).await?;
    eprintln!("fan-out run {failing:?}: delivering process {:?}", server.child.id());
    let started = Instant::now();
    while receiver.healthy(&prefix).0 < expected && started.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if failing == "one" {
        while receiver.failures(&failing_name) < activations && started.elapsed() < DRAIN {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The last batch's records are written after its attempts end.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Arrivals at the failing endpoint, retries included: a retry comes
    // due 5 s after its first attempt, within a drain longer than that.
    let failing_arrivals = receiver.failures(&failing_name);
    let (delivered, span) = receiver.healthy(&prefix);
    let seconds = span.map_or(0.0, |(first, last)| (last - first).as_secs_f64());
    let per_endpoint = if seconds > 0.0 { delivered as f64 / seconds / healthy_endpoints as f64 } else { 0.0 };
    let (mut failing_rows, mut healthy_rows) = (0, 0);
    for (n, endpoint) in endpoints.iter().enumerate() {
        let rows = delivery_rows(database_url, endpoint).await?;
        if failing == "one" && n == ENDPOINTS - 1 {
            failing_rows = rows;
        } else {
            healthy_rows += rows;
        }
    }
    drop(server);
    let failures = if failing == "one" { activations } else { 0 };
    let run = Run {
        per_endpoint,
        healthy_deliveries: delivered,
        seconds,
        failures,
        failing_arrivals,
        failing_rows,
        healthy_rows,
    };
    Ok((run, endpoints))
}
