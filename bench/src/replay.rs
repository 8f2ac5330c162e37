//! `replay`: rebuild every read model from N events, in events per second,
//! and what holding those N licenses costs a server: its start-up time and
//! resident memory once its in-memory validation view is loaded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;

use futures::StreamExt;

use crate::scenario::{generate, post, user_key, Bench, Served, OPERATOR};
use crate::{this_binary, REBUILD_KEYLEDGER};

pub async fn run(bench: &mut Bench) -> Result<Value, String> {
    let database_url = bench.database("keyledger").await?;
    let server = bench.keyledger_on(&database_url, &[]).await?;
    let empty_rss = settled_rss(&server).await?;
    let key = user_key(&bench.client, &server).await?;
    let events_wanted = bench.options.events;
    // Ten events a license unless told otherwise: a generate, then a
    // machine activated and deactivated in turn.
    let count = bench.options.licenses.unwrap_or(events_wanted / 10).clamp(1, events_wanted.max(1));
    eprintln!("generating {count} licenses through the API...");
    let started = Instant::now();
    let mut keys = Vec::with_capacity(count);
    // In slices, to show progress on a long preparation.
    while keys.len() < count {
        let slice = (count - keys.len()).min(50_000);
        keys.extend(generate(&bench.client, &server, &key, slice, json!({})).await?);
        eprintln!("  {} licenses after {:.0} s", keys.len(), started.elapsed().as_secs_f64());
    }
    let toggles = events_wanted.saturating_sub(count);
    eprintln!("activating and deactivating machines for {toggles} more events...");
    // Round by round, so a license's activation is answered before its
    // deactivation is sent.
    for round in 0..toggles.div_ceil(count) {
        let action = if round % 2 == 0 { "activate" } else { "deactivate" };
        let url = format!("{}/api/v1/licenses/{action}", server.base);
        let in_round = (toggles - round * count).min(count);
        let answers: Vec<Result<Value, String>> = futures::stream::iter(&keys[..in_round])
            .map(|license| {
                let (client, url) = (&bench.client, &url);
                async move { post(client, url, None, &json!({"licenseKey": license, "machineId": "replay"})).await }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        answers.into_iter().collect::<Result<Vec<_>, _>>()?;
    }
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let events = count_events(&database_url).await?;
    let rebuild = rebuild(bench, &database_url).await?;
    let seconds = rebuild["seconds"].as_f64().ok_or("the rebuild reported no duration")?;
    let events_per_second = if seconds > 0.0 { events as f64 / seconds } else { 0.0 };

    let starting = Instant::now();
    let server = bench.keyledger_on(&database_url, &[]).await?;
    let start_seconds = starting.elapsed().as_secs_f64();
    let loaded_rss = settled_rss(&server).await?;
    drop(server);

    let per_license = (loaded_rss.saturating_sub(empty_rss)) as f64 / count.max(1) as f64;
    let at_a_million = empty_rss as f64 + per_license * 1_000_000.0;
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    eprintln!("replay: {events} events rebuilt in {seconds:.2} s = {events_per_second:.0} events/s (target >= 100000)");
    eprintln!(
        "memory: {:.0} MiB empty, {:.0} MiB with {count} licenses loaded ({per_license:.0} bytes a license); \
         start-up with them {start_seconds:.1} s",
        empty_rss as f64 / 1048576.0,
        loaded_rss as f64 / 1048576.0
    );
    let measured_million = count >= 1_000_000;
    if measured_million {
        eprintln!("resident memory with {count} licenses: {:.2} GiB (target < 1 GiB)", loaded_rss as f64 / GIB);
    } else {
        eprintln!(
            "resident memory at 1,000,000 licenses, extrapolated: {:.2} GiB (fixed costs make small runs overstate it; \
             measure with --events 1000000 --licenses 1000000)",
            at_a_million / GIB
        );
    }
    Ok(json!({
        "scenario": "replay", "backend": bench.backend(), "events": events, "licenses": count,
        "replay": {"seconds": seconds, "events_per_second": events_per_second},
        "memory": {
            "empty_rss_bytes": empty_rss, "loaded_rss_bytes": loaded_rss, "bytes_per_license": per_license,
            "million_licenses_rss_bytes": if measured_million { loaded_rss as f64 } else { at_a_million },
            "million_measured": measured_million,
        },
        "start_up_seconds": start_seconds,
        "reports": [],
        "targets_met": {
            "replay_events_per_second": events_per_second >= 100_000.0,
            // Only a run with a million licenses can meet or miss it.
            "million_licenses_under_1_gib": measured_million.then_some((loaded_rss as f64) < GIB),
        },
    }))
}

/// Rebuilds the read models in a process of its own, which times the
/// rebuild itself (not its start-up).
pub(crate) async fn rebuild(bench: &Bench, database_url: &str) -> Result<Value, String> {
    let output = Command::new(this_binary())
        .arg(REBUILD_KEYLEDGER)
        .env("KEYLEDGER_DATA_DIR", bench.dir.path().join("keyledger-data"))
        .env("KEYLEDGER_DATABASE_URL", database_url)
        .env("KEYLEDGER_OPERATOR_TOKEN", OPERATOR)
        .env("KEYLEDGER_MASTER_KEY", crate::scenario::MASTER_KEY)
        .env("KEYLEDGER_RATE_LIMITS", "off")
        .env("KEYLEDGER_LOG", "warn")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("rebuild failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("rebuild's report: {e}"))
}

pub(crate) async fn count_events(database_url: &str) -> Result<i64, String> {
    const SQL: &str = "SELECT COUNT(*) FROM events";
    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await.map_err(|e| e.to_string())?;
        let count = sqlx::query_scalar(SQL).fetch_one(&pool).await.map_err(|e| e.to_string());
        pool.close().await;
        count
    } else {
        let pool = sqlx::SqlitePool::connect(database_url).await.map_err(|e| e.to_string())?;
        let count = sqlx::query_scalar(SQL).fetch_one(&pool).await.map_err(|e| e.to_string());
        pool.close().await;
        count
    }
}

/// The server's resident memory once it has sat idle for a moment.
async fn settled_rss(server: &Served) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.child.id().ok_or("the server has exited")?;
    resident_bytes(pid)
}

/// VmRSS of a process, from Linux's /proc.
pub(crate) fn resident_bytes(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS in /proc status")?;
    Ok(kib * 1024)
}
