//! kill -9 of `keyledger projections rebuild` part way: every
//! `license_view` row is then as it was before the rebuild or as the
//! rebuild writes it, never part of each, and the next rebuild finishes
//! the work. On both backends.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{fresh_server, keyledger, post, run_to_end, Fresh};

/// Licenses generated: enough that every key range of the rebuild (two
/// to sixteen, by the machine's cores) has rows.
const LICENSES: usize = 400;

/// A `license_view` row: the columns the test damages and compares.
type Row = (String, i64, String, String, String);

const ROWS: &str =
    "SELECT license_id, version, state, COALESCE(last_hash, ''), owner_id FROM license_view ORDER BY license_id";

/// Every row stale (no chain hash), and the rows of the first half of the
/// key space also with another owner: an indexed column, which a SQLite
/// rebuild writes by the other of its two upserts.
const DAMAGE: [&str; 2] =
    ["UPDATE license_view SET last_hash = ''", "UPDATE license_view SET owner_id = 'damaged' WHERE license_id < '8'"];

/// Slows the rebuild's row writes (tens of milliseconds each), so that it
/// can be killed after some of its transactions have committed and before
/// the rest have: on SQLite every row, since the key ranges' transactions
/// take turns and each then outlasts the test's look at the rows; on
/// PostgreSQL, where they run at once, the rows of the key space's second
/// half, so its first half's transactions commit long before.
fn slow_writes(backend: &str) -> Vec<&'static str> {
    match backend {
        "sqlite" => vec![
            "CREATE TRIGGER slow_view_update AFTER UPDATE ON license_view
             BEGIN SELECT length(hex(randomblob(3000000))); END",
        ],
        _ => vec![
            "CREATE FUNCTION slow_view_update() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.license_id >= '8' THEN PERFORM pg_sleep(0.03); END IF; RETURN NEW; END $$",
            "CREATE TRIGGER slow_view_update AFTER UPDATE ON license_view
             FOR EACH ROW EXECUTE FUNCTION slow_view_update()",
        ],
    }
}

const FAST_WRITES: &str = "DROP TRIGGER slow_view_update ON license_view";
const FAST_WRITES_SQLITE: &str = "DROP TRIGGER slow_view_update";

/// Runs `sql` on the database, or answers its rows.
async fn execute(database_url: &str, sql: &str) {
    if database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    }
}

async fn rows(database_url: &str) -> Vec<Row> {
    if database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let rows = sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let rows = sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }
}

async fn a_rebuild_killed_part_way_leaves_every_row_as_it_was_or_rebuilt(backend: &str) {
    let Fresh { data_dir, database_url, mut server, client, user } = fresh_server(backend).await;
    let base = server.base.clone();
    for _ in 0..LICENSES {
        let (status, _) = post(&client, format!("{base}/api/v1/licenses/generate"), Some(&user), json!({})).await;
        assert_eq!(status, 200);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let original = rows(&database_url).await;
    assert_eq!(original.len(), LICENSES);
    for sql in DAMAGE {
        execute(&database_url, sql).await;
    }
    let damaged = rows(&database_url).await;
    assert!(original.iter().zip(&damaged).all(|(a, b)| a != b), "every row is damaged");
    for sql in slow_writes(backend) {
        execute(&database_url, sql).await;
    }

    let mut rebuild = keyledger(data_dir.path(), &database_url)
        .args(["projections", "rebuild"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let now = rows(&database_url).await;
        if now.iter().zip(&original).any(|(row, rebuilt)| row == rebuilt) {
            break;
        }
        if rebuild.try_wait().unwrap().is_some() {
            let output = rebuild.wait_with_output().unwrap();
            panic!("the rebuild ended before any of its writes was seen: {}", String::from_utf8_lossy(&output.stderr));
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no row rebuilt in two minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rebuild.kill().expect("kill -9"); // SIGKILL on Unix
    rebuild.wait().unwrap();

    let after = rows(&database_url).await;
    let rebuilt = after.iter().zip(&original).filter(|(row, rebuilt)| row == rebuilt).count();
    let as_it_was = after.iter().zip(&damaged).filter(|(row, was)| row == was).count();
    assert_eq!(rebuilt + as_it_was, LICENSES, "a row is part rebuilt: {rebuilt} rebuilt, {as_it_was} as they were");
    assert!(as_it_was > 0, "the rebuild was killed part way, yet every row was rebuilt");
    eprintln!("{backend}: killed the rebuild with {rebuilt} rows rebuilt and {as_it_was} as they were");

    execute(&database_url, if backend == "sqlite" { FAST_WRITES_SQLITE } else { FAST_WRITES }).await;
    run_to_end(data_dir.path(), &database_url, &["projections", "rebuild"], "rebuild failed");
    assert_eq!(rows(&database_url).await, original, "the second rebuild finished the first one's work");
    run_to_end(data_dir.path(), &database_url, &["audit", "verify"], "a hash chain broke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rebuild_killed_part_way_leaves_every_row_as_it_was_or_rebuilt() {
    a_rebuild_killed_part_way_leaves_every_row_as_it_was_or_rebuilt("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_rebuild_killed_part_way_leaves_every_row_as_it_was_or_rebuilt() {
    a_rebuild_killed_part_way_leaves_every_row_as_it_was_or_rebuilt("postgres").await;
}
