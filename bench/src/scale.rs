//! `scale`: keyledger at the size a large fleet reaches, 1,000,000
//! licenses and 10,000,000 events unless `--licenses` says otherwise.
//!
//! The data set is written straight into the database through the log's
//! own append path ([`EventLog::append_after`], with each license's view
//! row in the same transaction, as a command writes it): through HTTP it
//! would take hours. Each license gets ten events: generated, then a
//! machine activated and deactivated in turn, ending activated. The
//! events are copies of ones a real server wrote for one license, with
//! the license's id and key replaced.
//!
//! Then it measures, at that size: the rebuild of the read models, `audit
//! verify`, a restart (until the first validate is answered, and until
//! `/health` says ready), the resident memory with every license loaded,
//! validate throughput and one license's history. It runs for many
//! minutes and is not part of the test command.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use futures::StreamExt;
use keyledger_domain::{KeyFormat, License, LicenseEvent, LicenseKey};
use keyledger_eventlog::{BatchedAppend, Database, EventLog, NewEvent, ProjectedRow, AGGREGATE_TYPE};
use keyledger_projections::LicenseViews;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::load::{self, Report};
use crate::replay::{count_events, rebuild, resident_bytes};
use crate::scenario::{post, print_table, Bench, Served, OPERATOR};
use crate::{this_binary, VERIFY_KEYLEDGER};

/// Events a license gets: generated, then nine activations and
/// deactivations in turn, so it ends activated.
const EVENTS_PER_LICENSE: usize = 10;
/// The machine every license is activated on.
const MACHINE: &str = "scale-machine";
/// Licenses a batch appends (one SQLite transaction).
const CHUNK: usize = 250;
/// Batches in flight while building (PostgreSQL commits their appends in
/// groups; SQLite takes them one after another).
const IN_FLIGHT: usize = 4;

pub async fn run(bench: &mut Bench) -> Result<Value, String> {
    let count = bench.options.licenses.unwrap_or(1_000_000).max(1);
    let (database_url, sample, build_seconds) = match bench.options.reuse_database.clone() {
        Some(url) => {
            let sample = sample_of(&url).await?;
            (url, sample, None)
        }
        None => {
            let url = bench.database("keyledger").await?;
            let started = Instant::now();
            let sample = build_data_set(bench, &url, count).await?;
            (url, sample, Some(started.elapsed().as_secs_f64()))
        }
    };
    consumers_kept_up(&database_url).await?;
    let events = count_events(&database_url).await?;
    let count = count_licenses(&database_url).await?;
    // A rebuild over an intact view writes no row; one over a view whose
    // every row is stale (a changed fold, say) rewrites them all. The
    // target is held against the second.
    let (intact_seconds, intact_rate) = timed_rebuild(bench, &database_url, events).await?;
    eprintln!("rebuild over the intact view: {intact_seconds:.1} s, {intact_rate:.0} events/s");
    every_view_row_stale(&database_url).await?;
    let (rebuild_seconds, rebuild_rate) = timed_rebuild(bench, &database_url, events).await?;
    eprintln!("rebuild, every row rewritten: {rebuild_seconds:.1} s, {rebuild_rate:.0} events/s (target >= 100,000)");

    let verify = verify(bench, &database_url).await?;
    let verify_seconds = verify["seconds"].as_f64().ok_or("verify reported no duration")?;
    if verify["broken"].as_u64() != Some(0) || verify["events"].as_i64() != Some(events) {
        return Err(format!("verify did not find the {events} events whole: {verify}"));
    }
    eprintln!("audit verify: {verify_seconds:.1} s for {events} events (target < 60 s)");

    let restart = restart(bench, &database_url, &sample).await?;
    let server = &restart.server;
    let rss = resident_bytes(server.child.id().ok_or("the server has exited")?)?;
    eprintln!(
        "restart: validate answered after {:.2} s (target < 5 s), view loaded after {:.2} s; resident {:.0} MiB (target < 1 GiB)",
        restart.first_validate,
        restart.ready,
        rss as f64 / 1048576.0
    );

    let keys = Arc::new(sample.iter().map(|(_, key)| key.clone()).collect::<Vec<_>>());
    let validate = validate_sample(bench, server, keys).await;
    let history = history(bench, server, OPERATOR, &sample).await;
    print_table(&[&validate, &history]);
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let million = count >= 1_000_000;
    Ok(json!({
        "scenario": "scale", "backend": bench.backend(), "licenses": count, "events": events,
        "build_seconds": build_seconds,
        "database": if bench.options.keep_database { Some(&database_url) } else { None },
        "rebuild": {"seconds": rebuild_seconds, "events_per_second": rebuild_rate},
        "rebuild_over_intact_view": {"seconds": intact_seconds, "events_per_second": intact_rate},
        "verify": verify,
        "restart": {"first_validate_seconds": restart.first_validate, "view_loaded_seconds": restart.ready},
        "resident_bytes": rss,
        "reports": [validate, history],
        "targets_met": {
            "rebuild_events_per_second": rebuild_rate >= 100_000.0,
            "verify_under_60_s": million.then_some(verify_seconds < 60.0),
            "validate_within_5_s": million.then_some(restart.first_validate < 5.0),
            "resident_under_1_gib": million.then_some((rss as f64) < GIB),
        },
    }))
}

/// Builds the data set: one license's events from a real server as
/// templates, then `count` licenses from them through the append path.
/// Returns the sample the measurements use.
async fn build_data_set(bench: &Bench, database_url: &str, count: usize) -> Result<Vec<(String, String)>, String> {
    let server = bench.keyledger_on(database_url, &[]).await?;
    let tenant =
        post(&bench.client, &format!("{}/api/v1/tenants", server.base), Some(OPERATOR), &json!({"name": "Scale"}))
            .await?;
    let key = tenant["adminKey"].as_str().ok_or("no admin key")?.to_owned();
    let templates = templates(bench, &server, database_url, &key).await?;
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!("writing {count} licenses ({} events) through the log's append path...", count * EVENTS_PER_LICENSE);
    let started = Instant::now();
    let sample = build(database_url, &templates, count).await?;
    eprintln!("written in {:.0} s", started.elapsed().as_secs_f64());
    Ok(sample)
}

/// Moves every consumer of the tail to the log's end, as consumers that
/// kept up with the fleet would be: the data set was written straight
/// into the log, and ten million events to catch up on (webhooks,
/// anomalies) would otherwise share the machine with every measurement.
async fn consumers_kept_up(database_url: &str) -> Result<(), String> {
    let db = Database::connect(database_url, 2).await.map_err(|e| e.to_string())?;
    let log = EventLog::new(db.clone());
    let end = log.end_cursor().await.map_err(|e| e.to_string())?.unwrap_or_default();
    const SQL: &str = "SELECT name FROM consumer_checkpoints";
    let mut names: Vec<String> =
        keyledger_eventlog::on_pool!(&db, pool => sqlx::query_scalar(SQL).fetch_all(pool).await)
            .map_err(|e| e.to_string())?;
    // And the tail's consumers that have saved no position yet (a kept
    // data set measured once had no row for the anomaly detector, which
    // then read all ten million events while memory was measured).
    use keyledger_workers::{ANOMALY_DETECTOR, LICENSE_VIEW_RUNNER, RESOURCE_RELEASER, WEBHOOK_DISPATCHER};
    for name in [LICENSE_VIEW_RUNNER, WEBHOOK_DISPATCHER, ANOMALY_DETECTOR, RESOURCE_RELEASER] {
        if !names.iter().any(|saved| saved == name) {
            names.push(name.to_owned());
        }
    }
    for name in names {
        log.save_checkpoint(&name, end).await.map_err(|e| e.to_string())?;
    }
    db.close().await;
    Ok(())
}

/// A rebuild's seconds, and the events of the log it replayed a second.
async fn timed_rebuild(bench: &Bench, database_url: &str, events: i64) -> Result<(f64, f64), String> {
    let report = rebuild(bench, database_url).await?;
    let seconds = report["seconds"].as_f64().ok_or("the rebuild reported no duration")?;
    Ok((seconds, events as f64 / seconds.max(f64::EPSILON)))
}

/// Makes every `license_view` row differ from what a rebuild writes (its
/// last hash emptied), so the next rebuild rewrites every row.
async fn every_view_row_stale(database_url: &str) -> Result<(), String> {
    let db = Database::connect(database_url, 2).await.map_err(|e| e.to_string())?;
    const SQL: &str = "UPDATE license_view SET last_hash = ''";
    keyledger_eventlog::on_pool!(&db, pool => sqlx::query(SQL).execute(pool).await.map(drop))
        .map_err(|e| e.to_string())?;
    db.close().await;
    Ok(())
}

/// Every hundredth license of a kept data set, by id: its id and key.
async fn sample_of(database_url: &str) -> Result<Vec<(String, String)>, String> {
    let db = Database::connect(database_url, 2).await.map_err(|e| e.to_string())?;
    const SQL: &str = "SELECT license_id, license_key FROM license_view ORDER BY license_id";
    let rows: Vec<(String, String)> =
        keyledger_eventlog::on_pool!(&db, pool => sqlx::query_as(SQL).fetch_all(pool).await)
            .map_err(|e| e.to_string())?;
    db.close().await;
    Ok(rows.into_iter().step_by(100).collect())
}

async fn count_licenses(database_url: &str) -> Result<usize, String> {
    let db = Database::connect(database_url, 2).await.map_err(|e| e.to_string())?;
    const SQL: &str = "SELECT COUNT(*) FROM license_view";
    let count: i64 = keyledger_eventlog::on_pool!(&db, pool => sqlx::query_scalar(SQL).fetch_one(pool).await)
        .map_err(|e| e.to_string())?;
    db.close().await;
    Ok(count as usize)
}

/// The events of one license generated, activated and deactivated
/// through `server`: its generated, activated and deactivated events.
async fn templates(
    bench: &Bench,
    server: &Served,
    database_url: &str,
    key: &str,
) -> Result<[(String, String, Value, Value); 3], String> {
    let made = post(&bench.client, &format!("{}/api/v1/licenses/generate", server.base), Some(key), &json!({})).await?;
    let (license_key, id) = (made["licenseKey"].as_str().ok_or("no key")?, made["id"].as_str().ok_or("no id")?);
    let body = json!({"licenseKey": license_key, "machineId": MACHINE});
    for action in ["activate", "deactivate"] {
        post(&bench.client, &format!("{}/api/v1/licenses/{action}", server.base), None, &body).await?;
    }
    let db = Database::connect(database_url, 2).await.map_err(|e| e.to_string())?;
    let history = EventLog::new(db.clone()).history(id, 0, 10).await.map_err(|e| e.to_string())?;
    db.close().await;
    let pick = |index: usize| -> Result<(String, String, Value, Value), String> {
        let event = history.get(index).ok_or("the template license has fewer than three events")?;
        let mut payload = event.payload.clone();
        // Per-tenant serial numbers would repeat in copies: left out, as
        // on licenses made before numbers.
        for variant in ["LicenseGenerated", "LicenseActivated"] {
            if let Some(fields) = payload.get_mut(variant).and_then(Value::as_object_mut) {
                fields.remove("number");
                fields.remove("device_number");
            }
        }
        Ok((event.event_type.clone(), event.event_version.clone(), payload, event.metadata.clone()))
    };
    Ok([pick(0)?, pick(1)?, pick(2)?])
}

/// Writes `count` licenses from the templates; returns a sample of them
/// (every hundredth's id and key, at least one) for the measurements.
async fn build(database_url: &str, templates: &[Template; 3], count: usize) -> Result<Vec<(String, String)>, String> {
    let db = Database::connect(database_url, 16).await.map_err(|e| e.to_string())?;
    let log = EventLog::new(db.clone());
    let written = AtomicUsize::new(0);
    let started = Instant::now();
    let chunks = (0..count).step_by(CHUNK).map(|from| from..(from + CHUNK).min(count));
    let results: Vec<Result<Vec<(String, String)>, String>> = futures::stream::iter(chunks)
        .map(|chunk| {
            let (log, written) = (&log, &written);
            async move {
                let licenses: Vec<(usize, String, String)> = chunk
                    .map(|n| {
                        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
                        let id = uuid::Uuid::from_u128(rand::Rng::gen(&mut rng)).to_string();
                        let key = LicenseKey::generate(&mut rng, KeyFormat::default()).as_str().to_owned();
                        (n, id, key)
                    })
                    .collect();
                let payloads = licenses
                    .iter()
                    .map(|(_, id, key)| license_events(templates, id, key))
                    .collect::<Result<Vec<_>, _>>()?;
                let commands: Vec<BatchedAppend<'_>> = licenses
                    .iter()
                    .zip(&payloads)
                    .map(|((_, id, _), (payloads, row))| BatchedAppend {
                        events: payloads
                            .iter()
                            .zip(1..)
                            .map(|((template, payload), sequence)| NewEvent {
                                aggregate_type: AGGREGATE_TYPE,
                                aggregate_id: id,
                                sequence,
                                event_type: &template.0,
                                event_version: &template.1,
                                payload,
                                metadata: &template.3,
                            })
                            .collect(),
                        previous_hash: "",
                        projected: Some(row.clone()),
                    })
                    .collect();
                log.append_batch(&commands).await.map_err(|e| format!("append: {e}"))?;
                let before = written.fetch_add(licenses.len(), Ordering::Relaxed);
                if (before + licenses.len()) / 100_000 > before / 100_000 {
                    eprintln!("  {} licenses after {:.0} s", before + licenses.len(), started.elapsed().as_secs_f64());
                }
                Ok(licenses.into_iter().filter(|(n, _, _)| n % 100 == 0).map(|(_, id, key)| (id, key)).collect())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    db.close().await;
    let mut sample = Vec::new();
    for chunk in results {
        sample.extend(chunk?);
    }
    Ok(sample)
}

type Template = (String, String, Value, Value);
/// A license's events, each beside its template, and its view row.
type LicenseEvents<'t> = (Vec<(&'t Template, Value)>, ProjectedRow);

/// One license's ten events (each beside its template) and its view row.
fn license_events<'t>(templates: &'t [Template; 3], id: &str, key: &str) -> Result<LicenseEvents<'t>, String> {
    let mut payloads = Vec::with_capacity(EVENTS_PER_LICENSE);
    let mut generated = templates[0].2.clone();
    generated["LicenseGenerated"]["license_id"] = json!(id);
    generated["LicenseGenerated"]["license_key"] = json!(key);
    payloads.push((&templates[0], generated));
    for n in 1..EVENTS_PER_LICENSE {
        let template = if n % 2 == 1 { &templates[1] } else { &templates[2] };
        payloads.push((template, template.2.clone()));
    }
    let mut license = License::default();
    for (_, payload) in &payloads {
        let event: LicenseEvent =
            serde_json::from_value(payload.clone()).map_err(|e| format!("template event: {e}"))?;
        license.apply(event);
    }
    let row = LicenseViews::projected_row(&license, EVENTS_PER_LICENSE as i64).map_err(|e| e.to_string())?;
    Ok((payloads, row))
}

/// `keyledger audit verify` over the whole log, in a process of its own.
async fn verify(bench: &Bench, database_url: &str) -> Result<Value, String> {
    let output = Command::new(this_binary())
        .arg(VERIFY_KEYLEDGER)
        .env("KEYLEDGER_DATA_DIR", bench.dir.path().join("keyledger-data"))
        .env("KEYLEDGER_DATABASE_URL", database_url)
        .env("KEYLEDGER_OPERATOR_TOKEN", OPERATOR)
        .env("KEYLEDGER_MASTER_KEY", crate::scenario::MASTER_KEY)
        .env("KEYLEDGER_LOG", "warn")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("verify failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("verify's report: {e}"))
}

struct Restart {
    server: Served,
    /// Seconds from spawning the process to its first answered validate.
    first_validate: f64,
    /// Seconds from spawning the process to `/health` saying the
    /// validation view is loaded.
    ready: f64,
}

/// Starts a server on the built database and times it: until a validate
/// of a license from the sample is answered valid, and until `/health`
/// says its validation view is loaded.
async fn restart(bench: &Bench, database_url: &str, sample: &[(String, String)]) -> Result<Restart, String> {
    let started = Instant::now();
    let server = bench.keyledger_spawned(database_url, &[])?;
    let (_, key) = sample.last().ok_or("no sample license")?;
    let body = json!({"licenseKey": key, "machineId": MACHINE});
    let validate_url = format!("{}/api/v1/licenses/validate", server.base);
    let health_url = format!("{}/health", server.base);
    let (mut first_validate, mut ready) = (None, None);
    while first_validate.is_none() || ready.is_none() {
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the server did not answer within ten minutes".into());
        }
        if first_validate.is_none() {
            if let Ok(answer) = post(&bench.client, &validate_url, None, &body).await {
                if answer["isValid"] != json!(true) {
                    return Err(format!("a built license did not validate: {answer}"));
                }
                first_validate = Some(started.elapsed().as_secs_f64());
            }
        }
        if ready.is_none() {
            // Loaded, whatever the consumers' lag: a data set written
            // straight into the log leaves the tail's consumers (webhooks,
            // anomalies) ten million events to catch up on, which a fleet
            // whose consumers kept up would not have.
            let health: Option<Value> = match bench.client.get(&health_url).send().await {
                Ok(answer) => answer.json().await.ok(),
                Err(_) => None,
            };
            if health.is_some_and(|health| health["validationView"]["loading"] == json!(false)) {
                ready = Some(started.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Restart { server, first_validate: first_validate.unwrap_or_default(), ready: ready.unwrap_or_default() })
}

/// Validate calls spread over the sample, on the machine they hold.
async fn validate_sample(bench: &Bench, server: &Served, keys: Arc<Vec<String>>) -> Report {
    load::run_raw(
        "validate at scale",
        server.addr,
        bench.options.connections,
        bench.duration(),
        move |connection, n| {
            let key = &keys[(n as usize * 7919 + connection * 104_729) % keys.len()];
            let body = format!(r#"{{"licenseKey":"{key}","machineId":"{MACHINE}"}}"#);
            let path = "/api/v1/licenses/validate".to_owned();
            Some(load::Call { path, body: body.into_bytes(), expect: br#""isValid":true"# })
        },
    )
    .await
}

/// One license's history (its ten events, and the heartbeats the
/// validate load added) read by the operator, four requests at a time
/// over the sample.
async fn history(bench: &Bench, server: &Served, key: &str, sample: &[(String, String)]) -> Report {
    let ids = Arc::new(sample.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    let (client, base, key) = (bench.client.clone(), server.base.clone(), key.to_owned());
    load::run("history of a license", 4, bench.duration() / 2, move |connection, n| {
        let id = ids[(n as usize * 31 + connection * 7) % ids.len()].clone();
        let (client, url, key) = (client.clone(), format!("{base}/api/v1/licenses/{id}/events"), key.clone());
        Some(async move {
            let answer = client.get(&url).bearer_auth(&key).send().await.map_err(|e| e.to_string())?;
            let status = answer.status();
            let body: Value = answer.json().await.map_err(|e| e.to_string())?;
            // The validate load may have added a heartbeat or two.
            let events = body["events"].as_array().map_or(0, Vec::len);
            if status.is_success() && events >= EVENTS_PER_LICENSE {
                Ok(())
            } else {
                Err(format!("{status}: {events} events"))
            }
        })
    })
    .await
}
