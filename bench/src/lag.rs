//! `lag`: how long a committed write takes to reach the read models and
//! NATS, under a steady write load at 80% of the peak just measured.
//!
//! The write load is activations of fresh licenses (the hot write path),
//! first closed-loop to find the peak, then open-loop at 80% of it.
//!
//! - To NATS: server A relays to a private nats-server; the bench
//!   subscribes to every event subject and times each activation's event
//!   from the moment A acknowledged the write.
//! - To read models: `license_view` is written in the transaction that
//!   appends the events, so it has no lag. What can lag is another
//!   process's in-memory validation view: a sampler deactivates a machine
//!   through server A and polls server B (a second process on the same
//!   database) every millisecond until B stops validating it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::load::{self, Report};
use crate::scenario::{expect_field, generate_with_ids, post, print_table, user_key, Bench};

/// Share of the peak write rate the lag is measured at.
const LOAD_SHARE: f64 = 0.8;
const SAMPLER_LICENSES: usize = 16;
/// Longest a single observation is waited for before it counts as lost.
const GIVE_UP: Duration = Duration::from_secs(5);

pub async fn run(bench: &mut Bench) -> Result<Value, String> {
    let nats = PrivateNats::start(bench).await?;
    let database_url = bench.database("keyledger").await?;
    let a = bench.keyledger_on(&database_url, &[("KEYLEDGER_NATS_URL", nats.url.as_str())]).await?;
    let b = bench.keyledger_on(&database_url, &[]).await?;
    let key = user_key(&bench.client, &a).await?;
    let count = bench.options.licenses.unwrap_or(40_000);
    let fresh = Arc::new(generate_with_ids(&bench.client, &a, &key, count, json!({})).await?);
    let next = Arc::new(AtomicUsize::new(0));
    let activate_url = format!("{}/api/v1/licenses/activate", a.base);

    // Every activation's event as NATS delivers it, by license id.
    let delivered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let subscriber = {
        let client = async_nats::connect(&nats.url).await.map_err(|e| format!("NATS: {e}"))?;
        let mut messages = client.subscribe("keyledger.events.>").await.map_err(|e| format!("NATS: {e}"))?;
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = messages.next().await {
                let at = Instant::now();
                let Ok(envelope) = serde_json::from_slice::<Value>(&message.payload) else { continue };
                if envelope["type"] == "LicenseActivated" {
                    if let Some(id) = envelope["licenseId"].as_str() {
                        delivered.lock().expect("lock").insert(id.to_owned(), at);
                    }
                }
            }
        })
    };

    // The peak: closed-loop activations, as fast as the connections go.
    let peak_time = Duration::from_secs((bench.options.seconds / 3).max(1));
    let peak =
        closed_loop(bench, "peak: activate, closed loop", peak_time, &activate_url, fresh.clone(), next.clone()).await;
    let rate = (peak.throughput * LOAD_SHARE).max(1.0);
    eprintln!("peak {:.0} activations/s; measuring lag at {rate:.0}/s", peak.throughput);

    let sampler_licenses = crate::scenario::generate(&bench.client, &a, &key, SAMPLER_LICENSES, json!({})).await?;
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let sampling = tokio::spawn(sample_view_lag(
        bench.client.clone(),
        a.base.clone(),
        b.base.clone(),
        sampler_licenses,
        bench.duration(),
    ));
    let paced = paced_activations(bench, &activate_url, fresh, next, rate, acknowledged.clone()).await;
    let view_lags = sampling.await.map_err(|e| e.to_string())??;

    // Let the relay deliver what was acknowledged last.
    let waiting = Instant::now();
    while waiting.elapsed() < GIVE_UP {
        let done = {
            let (acked, seen) = (acknowledged.lock().expect("lock"), delivered.lock().expect("lock"));
            acked.keys().all(|id| seen.contains_key(id))
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscriber.abort();
    let (acked, seen) = (acknowledged.lock().expect("lock").clone(), delivered.lock().expect("lock").clone());
    let mut nats_lags: Vec<Duration> =
        acked.iter().filter_map(|(id, ack)| seen.get(id).map(|at| at.saturating_duration_since(*ack))).collect();
    let undelivered = acked.len() - nats_lags.len();
    drop((a, b, nats));

    print_table(&[&peak, &paced]);
    let nats = summarise(&mut nats_lags);
    let mut view_lags = view_lags;
    let view = summarise(&mut view_lags);
    eprintln!(
        "lag to NATS: p50 {:.1} ms, p99 {:.1} ms over {} events, {undelivered} not delivered within {GIVE_UP:?} (target p99 < 100 ms)",
        nats.p50_ms, nats.p99_ms, nats.count
    );
    eprintln!(
        "lag to another process's validation view: p50 {:.1} ms, p99 {:.1} ms over {} samples (target p99 < 50 ms); \
         license_view: none, written with the events",
        view.p50_ms, view.p99_ms, view.count
    );
    let targets_met = json!({
        "read_model_p99_under_50_ms": view.count > 0 && view.p99_ms < 50.0,
        "nats_p99_under_100_ms": nats.count > 0 && undelivered == 0 && nats.p99_ms < 100.0,
    });
    Ok(json!({
        "scenario": "lag", "backend": bench.backend(), "reports": [peak, paced],
        "write_rate": rate,
        "lag_ms": {"nats": nats, "validation_view": view, "license_view": "0 (same transaction)"},
        "nats_undelivered": undelivered,
        "targets_met": targets_met,
    }))
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct LagSummary {
    pub(crate) count: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

pub(crate) fn summarise(lags: &mut [Duration]) -> LagSummary {
    lags.sort_unstable();
    let at = |p: f64| {
        if lags.is_empty() {
            return 0.0;
        }
        let index = ((lags.len() as f64 * p).ceil() as usize).clamp(1, lags.len()) - 1;
        lags[index].as_secs_f64() * 1000.0
    };
    LagSummary { count: lags.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) }
}

/// Activates fresh licenses at `rate` a second for the run's duration,
/// whatever the answers' latency (open loop), recording when each was
/// acknowledged. Stops early if the prepared licenses run out.
pub(crate) async fn paced_activations(
    bench: &Bench,
    url: &str,
    fresh: Arc<Vec<(String, String)>>,
    next: Arc<AtomicUsize>,
    rate: f64,
    acknowledged: Arc<Mutex<HashMap<String, Instant>>>,
) -> Report {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(1024));
    // Latencies in microseconds, errors, the first error.
    type Results = (Vec<u32>, u64, Option<String>);
    let results: Arc<Mutex<Results>> = Arc::default();
    let mut tasks = Vec::new();
    while started.elapsed() < bench.duration() {
        ticks.tick().await;
        let Some((key, id)) = fresh.get(next.fetch_add(1, Ordering::Relaxed)).cloned() else {
            eprintln!("the prepared licenses ran out: raise --licenses");
            break;
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let (client, url) = (bench.client.clone(), url.to_owned());
        let (acknowledged, results) = (acknowledged.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = activate(&client, &url, &key).await;
            let at = Instant::now();
            let mut results = results.lock().expect("lock");
            results.0.push(sent.elapsed().as_micros() as u32);
            match answer {
                Ok(()) => {
                    acknowledged.lock().expect("lock").insert(id, at);
                }
                Err(error) => {
                    results.1 += 1;
                    results.2.get_or_insert(error);
                }
            }
            drop(permit);
        }));
    }
    futures::future::join_all(tasks).await;
    let (latencies, errors, first_error) = std::mem::take(&mut *results.lock().expect("lock"));
    let name = format!("activate at {rate:.0}/s, open loop");
    load::report(&name, 0, started.elapsed().as_secs_f64(), latencies, errors, first_error)
}

/// Activations of `fresh` licenses (taken in turn through `next`) as fast
/// as the connections go, for `duration` or until they run out.
pub(crate) async fn closed_loop(
    bench: &Bench,
    name: &str,
    duration: Duration,
    url: &str,
    fresh: Arc<Vec<(String, String)>>,
    next: Arc<AtomicUsize>,
) -> Report {
    let (client, url) = (bench.client.clone(), url.to_owned());
    load::run(name, bench.options.connections, duration, move |_, _| {
        let (key, _) = fresh.get(next.fetch_add(1, Ordering::Relaxed))?.clone();
        let (client, url) = (client.clone(), url.clone());
        Some(async move { activate(&client, &url, &key).await })
    })
    .await
}

async fn activate(client: &reqwest::Client, url: &str, key: &str) -> load::Outcome {
    expect_field(
        post(client, url, None, &json!({"licenseKey": key, "machineId": "lag"})).await,
        "success",
        &json!(true),
    )
}

/// Deactivates a machine through A and times how long B keeps validating
/// it, one sample at a time for `duration`.
async fn sample_view_lag(
    client: reqwest::Client,
    a: String,
    b: String,
    licenses: Vec<String>,
    duration: Duration,
) -> Result<Vec<Duration>, String> {
    let started = Instant::now();
    let mut lags = Vec::new();
    let mut n = 0;
    while started.elapsed() < duration {
        let body = json!({"licenseKey": licenses[n % licenses.len()], "machineId": "s"});
        n += 1;
        post(&client, &format!("{a}/api/v1/licenses/activate"), None, &body).await?;
        // B validates it (from its view, or confirming against the log).
        if !poll(&client, &b, &body, true).await? {
            return Err("server B never validated an activation made on A".into());
        }
        post(&client, &format!("{a}/api/v1/licenses/deactivate"), None, &body).await?;
        let deactivated = Instant::now();
        if poll(&client, &b, &body, false).await? {
            lags.push(deactivated.elapsed());
        }
    }
    Ok(lags)
}

/// Validates `body` on `server` every millisecond until the answer is
/// `wanted`; false if it never was within [`GIVE_UP`].
async fn poll(client: &reqwest::Client, server: &str, body: &Value, wanted: bool) -> Result<bool, String> {
    let started = Instant::now();
    while started.elapsed() < GIVE_UP {
        let answer = post(client, &format!("{server}/api/v1/licenses/validate"), None, body).await?;
        if answer["isValid"] == wanted {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(false)
}

/// A nats-server of this run's own on a free port, stopped when dropped.
/// The binary is `KEYLEDGER_TEST_NATS_SERVER`, else `nats-server` on the
/// PATH, else Debian's `/usr/sbin/nats-server` (scripts/test installs it).
struct PrivateNats {
    _child: Child,
    url: String,
}

impl PrivateNats {
    async fn start(bench: &Bench) -> Result<Self, String> {
        let binary = std::env::var("KEYLEDGER_TEST_NATS_SERVER").unwrap_or_else(|_| {
            let on_path = std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("nats-server").is_file()));
            if on_path { "nats-server" } else { "/usr/sbin/nats-server" }.to_owned()
        });
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(bench.dir.path().join("nats"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("lag needs nats-server ({binary}: {e}); scripts/test installs it"))?;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self { _child: child, url: format!("nats://127.0.0.1:{port}") });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("nats-server ({binary}) did not start on port {port}"))
    }
}
