//! kill -9 of the real `keyledger` binary in the middle of a write load:
//! after a restart every write that was answered 2xx is in the log and in
//! effect, the read model equals a rebuild from the log, and every hash
//! chain holds. On both backends (PostgreSQL at `KEYLEDGER_TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{fresh_server, post, run_to_end, start, Fresh};

pub async fn fresh_database(backend: &str, data_dir: &std::path::Path) -> String {
    if backend == "sqlite" {
        return format!("sqlite://{}/keyledger.db", data_dir.display());
    }
    let admin = std::env::var("KEYLEDGER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("kltest_crash_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.expect("PostgreSQL for tests; run scripts/test");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.unwrap();
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

async fn crash_mid_load_loses_no_acknowledged_write(backend: &str) {
    let Fresh { data_dir, database_url, mut server, client, user } = fresh_server(backend).await;
    let base = server.base.clone();
    let mut keys = Vec::new();
    for _ in 0..5 {
        let (_, license) =
            post(&client, format!("{base}/api/v1/licenses/generate"), Some(&user), json!({"maxActivations": 100000}))
                .await;
        keys.push(license["licenseKey"].as_str().unwrap().to_owned());
    }

    // Eight clients activate new machines as fast as they can; the server is
    // killed while they do.
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|worker| {
            let (client, base, keys) = (client.clone(), base.clone(), keys.clone());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 5_000 {
                    let key = &keys[n % keys.len()];
                    let machine = format!("w{worker}-{n}");
                    // The machine id doubles as its name, so the log shows it.
                    let body = json!({"licenseKey": key, "machineId": machine, "machineName": machine});
                    let (status, _) = post(&client, format!("{base}/api/v1/licenses/activate"), None, body).await;
                    if status == 200 {
                        acknowledged.lock().unwrap().push((key.clone(), machine));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.child.kill().expect("kill -9"); // SIGKILL on Unix
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    futures::future::join_all(clients).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "the load barely ran: {}", acknowledged.len());
    eprintln!("{backend}: killed the server after {} acknowledged activations", acknowledged.len());

    // Every acknowledged activation is in the log itself...
    let logged = activated_machines(backend, &database_url).await;
    let missing: Vec<_> = acknowledged.iter().filter(|(_, machine)| !logged.contains(machine)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged activations are not in the log, e.g. {:?}",
        missing.len(),
        missing.first()
    );

    // ...and in effect after a restart.
    let server = start(data_dir.path(), &database_url).await;
    let mut refused = Vec::new();
    for (key, machine) in &acknowledged {
        let body = json!({"licenseKey": key, "machineId": machine});
        let (_, answer) = post(&client, format!("{}/api/v1/licenses/validate", server.base), None, body).await;
        if answer["isValid"] != true {
            refused.push((machine.clone(), answer));
        }
    }
    assert!(refused.is_empty(), "{} acknowledged activations lost, e.g. {:?}", refused.len(), refused.first());

    // The read model equals a rebuild from the log, and every chain holds.
    let db_rows = || async {
        match backend {
            "sqlite" => {
                let pool = sqlx::SqlitePool::connect(&database_url).await.unwrap();
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT license_id, version, state FROM license_view ORDER BY license_id")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                pool.close().await;
                rows
            }
            _ => {
                let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT license_id, version, state FROM license_view ORDER BY license_id")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                pool.close().await;
                rows
            }
        }
    };
    let live = db_rows().await;
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    run_to_end(data_dir.path(), &database_url, &["projections", "rebuild"], "rebuild failed");
    assert_eq!(db_rows().await, live, "the live read model differs from a rebuild");
    run_to_end(data_dir.path(), &database_url, &["audit", "verify"], "a hash chain broke in the crash");
}

/// The machine names of every LicenseActivated event in the log.
async fn activated_machines(backend: &str, database_url: &str) -> std::collections::HashSet<String> {
    const SQL: &str = "SELECT CAST(payload AS TEXT) FROM events WHERE event_type = 'LicenseActivated'";
    let payloads: Vec<String> = if backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        sqlx::query_scalar(SQL).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query_scalar(SQL).fetch_all(&pool).await.unwrap()
    };
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|p| p["LicenseActivated"]["machine_name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_kill_9_mid_load_loses_no_acknowledged_write() {
    crash_mid_load_loses_no_acknowledged_write("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_kill_9_mid_load_loses_no_acknowledged_write() {
    crash_mid_load_loses_no_acknowledged_write("postgres").await;
}
