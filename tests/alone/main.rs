//! Tests that must have the PostgreSQL cluster to themselves, so they are
//! a test binary of their own: cargo runs test binaries one after
//! another, so nothing of the e2e suite runs beside them.
//!
//! The log's tail holds back whatever committed after the oldest
//! transaction still open anywhere on the cluster (that is how it never
//! skips an event that commits late). Beside the whole e2e suite, other
//! tests' transactions held it back for over two minutes in full runs,
//! which says nothing about the tail and failed the test.

use std::time::Duration;

use keyledger_eventlog::{Cursor, Database, EventLog};
use keyledger_tests::{eventually, Backend, TestApp};
use serde_json::json;

/// The case a position-ordered tail gets wrong: a transaction takes a low
/// position, others commit higher positions, and only then does it commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_tail_never_skips_an_event_that_commits_late() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let Database::Postgres(pool) = &app.db else { unreachable!("a PostgreSQL app") };
    let log = EventLog::new(app.db.clone());

    let mut late = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash)
         VALUES ('License', 'late-writer', 1, 'LicenseGenerated', '1.0', '{}', '{}', 'late-event', 'unchained')",
    )
    .execute(&mut *late)
    .await
    .unwrap();

    // Events committed after the late one took its position.
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    app.generate(&user.key, json!({})).await;
    let early_positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE event_id <> 'late-event'").fetch_all(pool).await.unwrap();
    assert!(!early_positions.is_empty());

    // While the late transaction runs, the tail holds back everything from it on.
    let held_back = log.tail(Cursor::START, 100).await.unwrap();
    assert!(held_back.is_empty(), "{held_back:?}");

    // A commit made with raw SQL sends no notice, so the tail may answer
    // from its quiet read for up to its reuse window. Every event must
    // then come, the late one first: a tail that skipped it would never
    // show them all, however long it is given, so the wait only bounds a
    // passing run.
    late.commit().await.unwrap();
    let expected = early_positions.len() + 1;
    let seen = eventually("the tail to show every event", Duration::from_secs(60), || async {
        let seen = log.tail(Cursor::START, 100).await.unwrap();
        (seen.len() >= expected).then_some(seen)
    })
    .await;
    assert_eq!(seen.len(), expected);
    assert_eq!(seen[0].event_id, "late-event", "the earlier transaction comes first");
    let late_position = seen[0].position;
    assert!(early_positions.iter().all(|&p| p > late_position), "the late event had the lowest position");
}
