//! `webhooks`: how fast keyledger delivers webhooks, and how soon after a
//! commit an event's first attempt reaches the receiver.
//!
//! - Throughput: a webhook subscribed to `license.activated` on a receiver
//!   in this process; a process with both fan-out workers off (webhook
//!   delivery, anomaly detection) runs activations closed-loop (the write
//!   path's figure without the workers), then
//!   a delivering process on the same database finds their events in the
//!   log and delivers the backlog: its rate is the whole pipeline's
//!   (dispatcher, queue, sender). The baseline POSTs the same kind of signed payload to the
//!   same receiver with the same HTTP client settings (no redirects, the
//!   same timeout, 64 at a time) and no queue.
//! - Latency: activations open-loop at 80% of the delivery rate just
//!   measured; each activation is timed from its HTTP acknowledgement (the
//!   commit) to the arrival of its event's first attempt.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::lag::{closed_loop, paced_activations, summarise};
use crate::load::{self, Report};
use crate::scenario::{generate_with_ids, post, print_table, Bench, OPERATOR};

const LOAD_SHARE: f64 = 0.8;
/// How long deliveries are waited for after the load stops.
const DRAIN: Duration = Duration::from_secs(60);
/// Connections of the raw POST loop. A keyledger process sends at most
/// `ENDPOINT_IN_FLIGHT` (16) attempts at once to one endpoint, so the
/// backlog's single endpoint gets 16 at most.
const BASELINE_CONCURRENCY: usize = 64;

/// First arrival of each license's activation, and every arrival's time.
#[derive(Default)]
struct Arrivals {
    first: HashMap<String, Instant>,
    all: Vec<Instant>,
}

pub async fn run(bench: &mut Bench) -> Result<Value, String> {
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let receiver = Receiver::start(arrivals.clone()).await?;
    let client = bench.client.clone();
    let database_url = bench.database("keyledger").await?;
    // Both fan-out workers, webhook delivery and anomaly detection, on or off.
    let env = |workers: &'static str| {
        [
            ("KEYLEDGER_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true"),
            ("KEYLEDGER_WEBHOOK_DELIVERY", workers),
            ("KEYLEDGER_ANOMALY_DETECTION", workers),
        ]
    };

    // A process with both workers off: the endpoint, then activations
    // closed-loop, whose events wait in the log.
    let quiet_server = bench.keyledger_on(&database_url, &env("off")).await?;
    let base = quiet_server.base.clone();
    let tenant = post(&client, &format!("{base}/api/v1/tenants"), Some(OPERATOR), &json!({"name": "Bench"})).await?;
    let admin = tenant["adminKey"].as_str().ok_or("no admin key")?.to_owned();
    let user = post(&client, &format!("{base}/api/v1/api-keys"), Some(&admin), &json!({"role": "user"})).await?;
    let user = user["key"].as_str().ok_or("no user key")?.to_owned();
    let count = bench.options.licenses.unwrap_or(150_000);
    let fresh = Arc::new(generate_with_ids(&client, &quiet_server, &user, count, json!({})).await?);
    let hook = json!({"url": receiver.url, "events": ["license.activated"]});
    let hook = post(&client, &format!("{base}/api/v1/webhooks"), Some(&admin), &hook).await?;
    let hook_id = hook["id"].as_str().ok_or("no webhook id")?.to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let quiet_url = format!("{base}/api/v1/licenses/activate");
    let name = "activate, fan-out workers off";
    let machine = MachineCpu::start(quiet_server.child.id());
    let quiet = closed_loop(bench, name, bench.duration(), &quiet_url, fresh.clone(), next.clone()).await;
    let quiet_cpu = machine.per(quiet.requests);
    let backlog = (quiet.requests - quiet.errors) as usize;
    drop(quiet_server);

    // The same database in a process that delivers: it finds the backlog
    // and delivers it as fast as its pipeline goes.
    let writes_before = crate::fan_out::row_writes(&database_url).await?;
    let spawned_at = Instant::now();
    let server = bench.keyledger_on(&database_url, &env("on")).await?;
    let loaded_at = Instant::now();
    let machine = MachineCpu::start(server.child.id());
    let drained = wait_for(&arrivals, backlog).await;
    let delivery_cpu = machine.per(drained as u64);
    let (first, last, while_loading, delivered) = {
        let arrivals = arrivals.lock().expect("lock");
        let while_loading = arrivals.all.iter().filter(|at| **at < loaded_at).count();
        (arrivals.all.iter().min().copied(), arrivals.all.iter().max().copied(), while_loading, arrivals.first.len())
    };
    // Whether the backlog went out while the process was still loading its
    // validation view (which would take the drain's CPU): /health answers
    // only once it is loaded, and the dispatcher starts at once.
    let since_start = |at: Option<Instant>| at.map_or(0.0, |at| at.saturating_duration_since(spawned_at).as_secs_f64());
    let loaded_s = (loaded_at - spawned_at).as_secs_f64();
    eprintln!(
        "the delivering process: loaded {loaded_s:.2} s after its start; the backlog's first delivery arrived at {:.2} s, its last at {:.2} s ({while_loading} while it was loading)",
        since_start(first),
        since_start(last),
    );
    let timeline = json!({
        "loaded_s": loaded_s, "first_delivery_s": since_start(first), "last_delivery_s": since_start(last),
        "delivered_while_loading": while_loading,
    });
    let delivery = {
        let seconds = match (first, last) {
            (Some(first), Some(last)) if last > first => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        let mut report = load::report("keyledger: webhook deliveries", 0, seconds, Vec::new(), 0, None);
        report.requests = delivered as u64;
        report.throughput = if seconds > 0.0 { delivered as f64 / seconds } else { 0.0 };
        report
    };
    let machine = MachineCpu::start(server.child.id());
    let baseline = baseline(bench, &receiver.url).await?;
    let post_cpu = machine.per(baseline.requests);
    let vs_baseline = crate::scenario::ratio(&delivery, &baseline);

    // Activations while the process delivers each one's webhook and runs
    // the anomaly detector over it.
    let activate_url = format!("{}/api/v1/licenses/activate", server.base);
    let name = "activate, webhooks and anomaly detection on";
    let machine = MachineCpu::start(server.child.id());
    let producing = closed_loop(bench, name, bench.duration(), &activate_url, fresh.clone(), next.clone()).await;
    let producing_cpu = machine.per(producing.requests);
    let vs_quiet = crate::scenario::ratio(&producing, &quiet);
    let expected = backlog + (producing.requests - producing.errors) as usize;
    wait_for(&arrivals, expected).await;

    // Latency from commit to first attempt at 80% of the delivery rate.
    let rate = (delivery.throughput.min(producing.throughput) * LOAD_SHARE).max(1.0);
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let arrived_before = arrivals.lock().expect("lock").first.len();
    let fresh_for_fan_out = fresh.clone();
    let paced = paced_activations(bench, &activate_url, fresh, next.clone(), rate, acknowledged.clone()).await;
    // Each paced activation is on a license of its own: one more first arrival.
    let expected = arrived_before + acknowledged.lock().expect("lock").len();
    wait_for(&arrivals, expected).await;
    let mut lags: Vec<Duration> = {
        let (acked, arrivals) = (acknowledged.lock().expect("lock"), arrivals.lock().expect("lock"));
        acked
            .iter()
            .filter_map(|(id, ack)| arrivals.first.get(id).map(|at| at.saturating_duration_since(*ack)))
            .collect()
    };
    let undelivered = acknowledged.lock().expect("lock").len() - lags.len();
    let lag = summarise(&mut lags);
    drop(server);
    // PostgreSQL counts a connection's writes by the time it closes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes_after = crate::fan_out::row_writes(&database_url).await?;
    let successful = arrivals.lock().expect("lock").all.len();
    let writes_per_delivery = writes_before.zip(writes_after).map(|((webhook, all), (webhook_after, all_after))| {
        let per = |n: i64| n as f64 / successful.max(1) as f64;
        (per(webhook_after - webhook), per(all_after - all))
    });
    let fan_out_backlog = (count / 7).clamp(1, 20_000);
    let fan_out = crate::fan_out::run(
        bench,
        &database_url,
        (&env("off"), &env("on")),
        &admin,
        &fresh_for_fan_out,
        &next,
        fan_out_backlog,
        vec![hook_id],
    )
    .await?;

    print_table(&[&quiet, &producing, &delivery, &baseline, &paced]);
    eprintln!("activate with both workers / without them = {vs_quiet:.2} (target >= 0.85)");
    match writes_per_delivery {
        Some((webhook, all)) => eprintln!(
            "row writes a successful delivery ({successful} of them, the delivering server's life): webhook tables {webhook:.3} (target <= 0.2); every table, activations' included, {all:.2}"
        ),
        None => eprintln!("row writes a delivery: PostgreSQL only (SQLite keeps no statistics of them)"),
    }
    eprintln!(
        "CPU an activation: without the workers keyledger {:.0} µs, PostgreSQL {:.0} µs; with them {:.0} µs and {:.0} µs",
        quiet_cpu.keyledger_us, quiet_cpu.postgres_us, producing_cpu.keyledger_us, producing_cpu.postgres_us
    );
    eprintln!(
        "deliveries / baseline = {vs_baseline:.2} (target >= 0.5); a backlog of {backlog}, {drained} delivered within {DRAIN:?}"
    );
    eprintln!(
        "CPU a delivery, from the delivering process's start to the backlog's end: keyledger {:.0} µs, PostgreSQL {:.0} µs, the bench and its receiver {:.0} µs; a raw POST: {:.0} µs (the bench, both ends)",
        delivery_cpu.keyledger_us, delivery_cpu.postgres_us, delivery_cpu.bench_us, post_cpu.bench_us
    );
    eprintln!(
        "commit to first attempt at {rate:.0}/s: p50 {:.1} ms, p99 {:.1} ms over {} events, {undelivered} not delivered (target p99 < 500 ms)",
        lag.p50_ms, lag.p99_ms, lag.count
    );
    Ok(json!({
        "scenario": "webhooks", "backend": bench.backend(),
        "reports": [quiet, producing, delivery, baseline, paced],
        "ratios": {"deliveries_over_baseline": vs_baseline, "activate_delivering_over_quiet": vs_quiet},
        "commit_to_first_attempt_ms": lag,
        "cpu_us_per_activation": {"workers_off": quiet_cpu, "workers_on": producing_cpu},
        "cpu_us_per_delivery": delivery_cpu,
        "cpu_us_per_raw_post": post_cpu,
        "delivering_process": timeline,
        "undelivered": undelivered,
        "row_writes_per_delivery": writes_per_delivery.map(|(webhook, all)| json!({"webhook_tables": webhook, "all_tables": all})),
        "fan_out": fan_out,
        "targets_met": {
            "deliveries_over_baseline": vs_baseline >= 0.5,
            "activate_delivering_over_quiet": vs_quiet >= 0.85,
            "row_writes_per_delivery": writes_per_delivery.map(|(webhook, _)| webhook <= 0.2),
            "first_attempt_p99_under_500_ms": lag.count > 0 && undelivered == 0 && lag.p99_ms < 500.0,
        },
    }))
}

/// CPU time spent on this machine from a start: by the keyledger
/// process, by PostgreSQL (if it runs here) and by the bench itself (its
/// receiver, and its own POSTs in the baseline).
struct MachineCpu {
    server: Option<u32>,
    keyledger: f64,
    postgres: f64,
    bench: f64,
}

/// [`MachineCpu`] divided by the deliveries or POSTs made meanwhile.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct CpuPerItem {
    keyledger_us: f64,
    postgres_us: f64,
    bench_us: f64,
}

impl MachineCpu {
    fn start(server: Option<u32>) -> Self {
        let keyledger = crate::cpu::seconds(server).unwrap_or_default();
        Self { server, keyledger, postgres: crate::cpu::postgres_seconds(), bench: crate::cpu::own_seconds() }
    }

    fn per(&self, items: u64) -> CpuPerItem {
        let micros = |now: f64, then: f64| (now - then).max(0.0) / items.max(1) as f64 * 1e6;
        CpuPerItem {
            keyledger_us: micros(crate::cpu::seconds(self.server).unwrap_or_default(), self.keyledger),
            postgres_us: micros(crate::cpu::postgres_seconds(), self.postgres),
            bench_us: micros(crate::cpu::own_seconds(), self.bench),
        }
    }
}

/// Waits until `expected` licenses' deliveries arrived, or [`DRAIN`]
/// passed; returns how many did.
async fn wait_for(arrivals: &Mutex<Arrivals>, expected: usize) -> usize {
    let started = Instant::now();
    loop {
        let arrived = arrivals.lock().expect("lock").first.len();
        if arrived >= expected || started.elapsed() > DRAIN {
            return arrived;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same receiver, POSTed to directly: a signed payload of a
/// delivery's size, with the sender's client settings, 64 at a time.
async fn baseline(bench: &Bench, url: &str) -> Result<Report, String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let key = b"0123456789abcdef0123456789abcdef";
    let url = url.to_owned();
    Ok(load::run("baseline: signed POSTs, no queue", BASELINE_CONCURRENCY, bench.duration(), move |connection, n| {
        let (client, url) = (client.clone(), url.clone());
        Some(async move {
            let id = format!("bench-{connection}-{n}");
            let body = json!({"type": "license.activated", "timestamp": "2026-01-01T00:00:00.000000Z",
                               "data": {"licenseId": id, "eventId": id, "padding": "x".repeat(600)}})
            .to_string();
            let timestamp = chrono::Utc::now().timestamp();
            let signature = keyledger_app::webhooks::signature::header(&[key.to_vec()], &id, timestamp, &body);
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if answer.status().is_success() {
                Ok(())
            } else {
                Err(format!("status {}", answer.status()))
            }
        })
    })
    .await)
}

/// A receiver in this process that notes when each delivery arrived.
struct Receiver {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(arrivals: Arc<Mutex<Arrivals>>) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let url = format!("http://{}/hooks", listener.local_addr().map_err(|e| e.to_string())?);
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(arrivals);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, task })
    }
}

async fn receive(State(arrivals): State<Arc<Mutex<Arrivals>>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    // The baseline's own POSTs carry no real license: only deliveries count.
    if let Some(license) = payload["data"]["licenseId"].as_str().filter(|id| !id.starts_with("bench-")) {
        let mut arrivals = arrivals.lock().expect("lock");
        arrivals.all.push(at);
        arrivals.first.entry(license.to_owned()).or_insert(at);
    }
    StatusCode::OK
}
