//! The log itself: one global order that a tail can follow while writers
//! race, and hash chains that reveal tampering.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use keyledger_api::verify_log;
use keyledger_eventlog::{
    on_pool, AppendError, ChainBreak, CheckpointCheck, Cursor, Database, EventLog, NewEvent, ProjectedRow,
    SignedCheckpoint, SqlValue,
};
use keyledger_tests::{eventually_result, on_both_backends, Backend, Licensed, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(
    the_read_model_row_names_the_hash_of_its_last_event,
    a_tail_running_during_concurrent_writes_sees_every_event_exactly_once,
    readers_of_one_log_share_its_tail_and_each_sees_every_event_once,
    verification_passes_an_untouched_log_and_finds_each_kind_of_tampering,
    history_pages_through_a_licenses_events_with_their_metadata,
    the_state_at_a_past_instant_is_the_events_up_to_then,
    a_kept_checkpoint_reveals_removed_events_that_the_chains_cannot,
    appends_made_at_once_each_keep_their_own_guard_and_row,
);

async fn a_tail_running_during_concurrent_writes_sees_every_event_exactly_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let log = EventLog::new(app.db.clone());

    // The tail reads in small pages while 12 writers work on 12 licenses.
    // It stops after 40 empty polls 50 ms apart: a fixed quiet spell, not
    // a wait for a count, since what it must show is that nothing more
    // (no duplicate) comes once every event has.
    let tail = {
        let log = log.clone();
        tokio::spawn(async move {
            let (mut cursor, mut seen, mut idle) = (Cursor::START, Vec::new(), 0);
            while idle < 40 {
                let page = log.tail(cursor, 7).await.expect("tail");
                match page.last() {
                    Some(last) => {
                        assert!(last.cursor > cursor, "the tail moved backwards");
                        cursor = last.cursor;
                        seen.extend(page);
                        idle = 0;
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            seen
        })
    };
    let writers = (0..12).map(|w| {
        let (app, key) = (&app, &user.key);
        async move {
            let license = app.generate(key, json!({"maxActivations": 3})).await;
            let license_key = license["licenseKey"].as_str().unwrap();
            for round in 0..4 {
                let machine = format!("w{w}-m{round}");
                assert_eq!(app.activate(license_key, &machine).await.status, StatusCode::OK);
                let body = json!({"licenseKey": license_key, "machineId": machine});
                assert_eq!(app.post("/api/v1/licenses/deactivate", None, body).await.status, StatusCode::OK);
            }
        }
    });
    join_all(writers).await;
    let seen = tail.await.unwrap();

    const ALL: &str = "SELECT event_id FROM events";
    let stored: Vec<String> = on_pool!(&app.db, pool => sqlx::query_scalar(ALL).fetch_all(pool).await).unwrap();
    assert_eq!(stored.len(), 12 * 9);
    let seen_ids: HashSet<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(seen.len(), stored.len(), "every event once: no duplicates, none missing");
    assert_eq!(seen_ids, stored.iter().map(String::as_str).collect());
    // Within each license the tail keeps the license's own order.
    let mut last_sequence: HashMap<&str, i64> = HashMap::new();
    for event in &seen {
        let previous = last_sequence.insert(&event.license_id, event.sequence).unwrap_or(0);
        assert_eq!(event.sequence, previous + 1, "license {} out of order", event.license_id);
    }
}

/// Runs `postgres_sql` or `sqlite_sql` against the server's database.
async fn tamper(db: &Database, postgres_sql: &str, sqlite_sql: &str, license_id: &str) {
    match db {
        Database::Postgres(pool) => sqlx::query(postgres_sql).bind(license_id).execute(pool).await.map(drop),
        Database::Sqlite(pool) => sqlx::query(sqlite_sql).bind(license_id).execute(pool).await.map(drop),
    }
    .expect("tamper with the log");
}

async fn verification_passes_an_untouched_log_and_finds_each_kind_of_tampering(backend: Backend) {
    let Licensed { app, tenant, user, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    // Four licenses with five events each: generated, 2 activated, deactivated, suspended.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let license = app.generate(&user.key, json!({"maxActivations": 2})).await;
        let (key, id) = (license["licenseKey"].as_str().unwrap(), license["id"].as_str().unwrap().to_owned());
        app.activate(key, "m1").await;
        app.activate(key, "m2").await;
        app.post("/api/v1/licenses/deactivate", None, json!({"licenseKey": key, "machineId": "m1"})).await;
        app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({})).await;
        ids.push(id);
    }
    let log = EventLog::new(app.db.clone());
    let clean = log.verify(None).await.unwrap();
    assert_eq!(clean.licenses, 5);
    assert_eq!(clean.events, 1 + 4 * 5);
    assert!(clean.broken.is_empty(), "{:?}", clean.broken);

    let (edited, deleted, swapped, untouched) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    tamper(
        &app.db,
        "UPDATE events SET payload = REPLACE(payload::text, 'test-machine', 'evil-machine')::json WHERE aggregate_id = $1 AND sequence = 2",
        "UPDATE events SET payload = REPLACE(payload, 'test-machine', 'evil-machine') WHERE aggregate_id = $1 AND sequence = 2",
        edited,
    )
    .await;
    let delete = "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 3";
    tamper(&app.db, delete, delete, deleted).await;
    for step in [
        "UPDATE events SET sequence = 1000 WHERE aggregate_id = $1 AND sequence = 2",
        "UPDATE events SET sequence = 2 WHERE aggregate_id = $1 AND sequence = 3",
        "UPDATE events SET sequence = 3 WHERE aggregate_id = $1 AND sequence = 1000",
    ] {
        tamper(&app.db, step, step, swapped).await;
    }

    let report = log.verify(None).await.unwrap();
    let broken: HashMap<&str, &ChainBreak> =
        report.broken.iter().map(|b| (b.license_id.as_str(), &b.first_break)).collect();
    assert_eq!(broken.len(), 3, "{:?}", report.broken);
    assert_eq!(broken[edited.as_str()], &ChainBreak::HashMismatch { sequence: 2 });
    assert_eq!(broken[deleted.as_str()], &ChainBreak::Gap { expected: 3, found: 4 });
    assert_eq!(broken[swapped.as_str()], &ChainBreak::HashMismatch { sequence: 2 });
    assert!(!broken.contains_key(untouched.as_str()));
    let one = log.verify(Some(untouched)).await.unwrap();
    assert_eq!((one.licenses, one.events, one.broken.len()), (1, 5, 0));
    let unknown = log.verify(Some("no-such-license")).await.unwrap();
    assert_eq!(unknown.broken[0].first_break, ChainBreak::NoEvents);

    // The API's history shows the stored events with their hashes.
    let history =
        app.request(Method::GET, &format!("/api/v1/licenses/{untouched}/events"), Some(&user.key), None).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let events = history.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    let stored = log.history(untouched, 0, 100).await.unwrap();
    for (shown, stored) in events.iter().zip(&stored) {
        assert_eq!(shown["hash"], stored.hash.as_str());
        assert_eq!(shown["eventId"], stored.event_id.as_str());
    }

    // Reordering the log itself (positions), with every chain intact.
    let reorder = [
        "UPDATE events SET position = -position WHERE aggregate_id = $1 AND sequence IN (4, 5)",
        "UPDATE events SET position = CASE sequence WHEN 4 THEN (SELECT -position FROM events e WHERE e.aggregate_id = events.aggregate_id AND e.sequence = 5) ELSE (SELECT -position FROM events e WHERE e.aggregate_id = events.aggregate_id AND e.sequence = 4) END WHERE aggregate_id = $1 AND sequence IN (4, 5)",
    ];
    if matches!(app.db, Database::Sqlite(_)) {
        for step in reorder {
            tamper(&app.db, step, step, untouched).await;
        }
        let reordered = log.verify(Some(untouched)).await.unwrap();
        assert_eq!(reordered.broken[0].first_break, ChainBreak::PositionOutOfOrder { sequence: 5 });
    }
}

async fn history_pages_through_a_licenses_events_with_their_metadata(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({})).await;
    app.activate(&key, "m1").await;
    app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({"reason": "audit"})).await;
    app.post(&format!("/api/v1/licenses/reinstate/{id}"), Some(&tenant.admin_key), json!({})).await;

    let path = format!("/api/v1/licenses/{id}/events");
    let first = app.get(&format!("{path}?limit=3"), Some(&user.key)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let page = first.body["events"].as_array().unwrap();
    let types: Vec<&str> = page.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["LicenseGenerated", "LicenseActivated", "LicenseSuspended"]);
    assert_eq!(page[0]["envelopeVersion"], 1);
    assert_eq!(page[0]["licenseId"], id.as_str());
    assert_eq!(page[0]["tenantId"], tenant.id.as_str());
    assert_eq!(page[0]["sequence"], 1);
    assert_eq!(page[0]["metadata"]["actor_role"], "user");
    assert_eq!(page[1]["metadata"]["actor_role"], "client");
    assert_eq!(page[2]["data"]["reason"], "audit");
    assert_eq!(page[2]["metadata"]["actor_role"], "admin");
    assert!(page.windows(2).all(|w| w[0]["position"].as_i64() < w[1]["position"].as_i64()));

    let after = first.body["nextAfter"].as_i64().expect("a full page says where to go on");
    let rest = app.get(&format!("{path}?limit=3&after={after}"), Some(&user.key)).await;
    let rest = rest.body["events"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["type"], "LicenseReinstated");

    // An auditor's own code, written from the README, rebuilds every hash.
    let env = [("BASE", app.base.as_str()), ("KEY", user.key.as_str()), ("LICENSE_ID", id.as_str())];
    let (ok, printed) = keyledger_tests::run_python("audit_chain.py", &[], &env).await;
    assert!(ok && printed.contains("4 events checked"), "{printed}");

    // Same access rules as the license itself; bad parameters name themselves.
    let colleague = app.user(&tenant, "colleague").await;
    assert_eq!(app.get(&path, Some(&colleague.key)).await.status, StatusCode::FORBIDDEN);
    let stranger = app.tenant("Other").await;
    assert_eq!(app.get(&path, Some(&stranger.admin_key)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&path, Some(keyledger_tests::OPERATOR_TOKEN)).await.status, StatusCode::OK);
    for bad in ["limit=0", "limit=5000", "after=-1", "after=x"] {
        let reply = app.get(&format!("{path}?{bad}"), Some(&user.key)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["field"], bad.split('=').next().unwrap());
    }
}

async fn the_state_at_a_past_instant_is_the_events_up_to_then(backend: Backend) {
    let Licensed { app, tenant, user, key, id, license } = Licensed::new(backend, json!({})).await;
    app.activate(&key, "m1").await;
    // Fixed waits: `while_active` must lie strictly between the two
    // events' timestamps, which only the clock moving on guarantees.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let while_active = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({})).await;

    let at = |t: chrono::DateTime<chrono::Utc>| {
        format!("/api/v1/licenses/{id}/state?at={}", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    let then = app.get(&at(while_active), Some(&user.key)).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert_eq!(then.body["version"], 2);
    assert_eq!(then.body["license"]["status"], 1);
    assert_eq!(then.body["license"]["machineName"], "test-machine");
    let now = app.get(&at(chrono::Utc::now()), Some(&user.key)).await;
    assert_eq!(now.body["version"], 3);
    assert_eq!(now.body["license"]["status"], 4);

    let created: chrono::DateTime<chrono::Utc> = license["createdAt"].as_str().unwrap().parse().unwrap();
    let before = app.get(&at(created - chrono::Duration::seconds(5)), Some(&user.key)).await;
    assert_eq!(before.status, StatusCode::NOT_FOUND);
    assert_eq!(before.body["code"], "license_not_yet_generated");
    let missing = app.get(&format!("/api/v1/licenses/{id}/state"), Some(&user.key)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["field"], "at");
    let garbled = app.get(&format!("/api/v1/licenses/{id}/state?at=yesterday"), Some(&user.key)).await;
    assert_eq!(garbled.body["field"], "at");
}

async fn a_kept_checkpoint_reveals_removed_events_that_the_chains_cannot(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 3})).await;
    app.activate(&key, "m1").await;
    let operator = Some(keyledger_tests::OPERATOR_TOKEN);

    // A transaction open anywhere on the PostgreSQL cluster (another test)
    // holds the tail back for a moment: retry until both events are covered.
    let (created, kept) = eventually_result("a checkpoint covering both events", Duration::from_secs(60), || async {
        let created = app.request(Method::POST, "/api/v1/audit/checkpoints", operator, None).await;
        assert!(matches!(created.status, StatusCode::CREATED | StatusCode::CONFLICT), "{}", created.body);
        if created.status == StatusCode::CREATED {
            let kept: SignedCheckpoint = serde_json::from_value(created.body.clone()).unwrap();
            if kept.body.events == 2 {
                return Ok((created, kept));
            }
        }
        Err(format!("{}: {}", created.status, created.body))
    })
    .await;
    assert_eq!((kept.body.licenses, kept.body.events), (1, 2));
    let public_key = app.get("/api/v1/audit/public-key", None).await.body["publicKey"].as_str().unwrap().to_owned();
    assert_eq!(public_key, kept.public_key);
    let listed = app.get("/api/v1/audit/checkpoints", operator).await;
    assert!(listed.body.as_array().unwrap().contains(&created.body));
    for caller in [&tenant.admin_key, &user.key] {
        assert_eq!(app.get("/api/v1/audit/checkpoints", Some(caller)).await.status, StatusCode::FORBIDDEN);
        let refused = app.request(Method::POST, "/api/v1/audit/checkpoints", Some(caller), None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }

    let check = |checkpoint: SignedCheckpoint, key: String| {
        let config = app.config();
        async move { verify_log(&config, None, Some((&checkpoint, key.as_str()))).await.unwrap() }
    };
    // Later events are outside the checkpoint and don't disturb it.
    app.activate(&key, "m2").await;
    let (chains, outcome) = check(kept.clone(), public_key.clone()).await;
    assert!(chains.broken.is_empty());
    assert_eq!(outcome, Some(CheckpointCheck::Matches));

    // Cut the license back to its first event: every chain still holds...
    let truncate = "DELETE FROM events WHERE aggregate_id = $1 AND sequence > 1";
    tamper(&app.db, truncate, truncate, &id).await;
    let (chains, outcome) = check(kept.clone(), public_key.clone()).await;
    assert!(chains.broken.is_empty(), "a truncated chain is still a valid chain");
    // ...but not the heads the auditor's checkpoint signed.
    assert!(matches!(outcome, Some(CheckpointCheck::LogDiffers { .. })), "{outcome:?}");

    // A doctored checkpoint, or one signed by another key, is refused.
    let mut doctored = kept.clone();
    doctored.body.events = 1;
    assert_eq!(check(doctored, public_key.clone()).await.1, Some(CheckpointCheck::BadSignature));
    let other_key = "11".repeat(32);
    assert!(matches!(check(kept, other_key).await.1, Some(CheckpointCheck::UnexpectedKey { .. })));
}

/// Transaction ids order the tail as numbers, also where they gain a
/// digit: ordered as the text they are read as, "1000001" would come
/// before "999999", and a batch cut between them would skip the older.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_tail_orders_transaction_ids_as_numbers_across_a_digit() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let Database::Postgres(pool) = &app.db else { unreachable!("a PostgreSQL app") };
    let log = EventLog::new(app.db.clone());
    // A power of ten safely below this cluster's transaction ids: both
    // events look committed long ago.
    let current: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text").fetch_one(pool).await.unwrap();
    let current: u64 = current.parse().unwrap();
    let mut boundary = 10u64.pow(current.to_string().len() as u32 - 1);
    if boundary + 10 > current {
        boundary /= 10;
    }
    assert!(boundary >= 10, "the cluster's transaction ids ({current}) are too young for this test");
    let (older, newer) = (boundary - 1, boundary + 1);
    // The newer transaction takes the lower position.
    for (txid, id) in [(newer, "newer"), (older, "older")] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash, txid)
             VALUES ('License', $1, 1, 'LicenseGenerated', '1.0', '{}', '{}', $1, 'unchained', $2::text::xid8)",
        )
        .bind(id)
        .bind(txid.to_string())
        .execute(pool)
        .await
        .unwrap();
    }
    let first = log.tail(Cursor::START, 1).await.unwrap();
    assert_eq!(first[0].event_id, "older", "{older} before {newer}");
    let after_first = log.tail(first[0].cursor, 10).await.unwrap();
    assert_eq!(after_first.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["newer"]);
    let payloads = log.tail_payloads(Cursor::START, 10).await.unwrap();
    assert_eq!(payloads.iter().map(|e| e.license_id.as_str()).collect::<Vec<_>>(), ["older", "newer"]);
    let end = log.end_cursor().await.unwrap().unwrap();
    assert_eq!(end.txid as u64, newer, "the end is the newest transaction's event");
    log.check_transaction_ids().await.unwrap();
}

/// Every writer of a `license_view` row records the chain hash of the
/// event the row is at, so a process that loads its memory from the table
/// can chain a license's next event without reading the license back: the
/// command that appends, and the runner's rebuild.
async fn the_read_model_row_names_the_hash_of_its_last_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({})).await;
    let (id, key) = (license["id"].as_str().unwrap(), license["licenseKey"].as_str().unwrap());
    let agree = |step: &'static str| {
        let db = app.db.clone();
        async move {
            let row: Option<String> = on_pool!(&db, pool => sqlx::query_scalar(
                "SELECT last_hash FROM license_view WHERE license_id = $1").bind(id).fetch_one(pool).await)
            .unwrap();
            let newest: String = on_pool!(&db, pool => sqlx::query_scalar(
                "SELECT hash FROM events WHERE aggregate_id = $1 ORDER BY sequence DESC LIMIT 1").bind(id).fetch_one(pool).await)
            .unwrap();
            assert_eq!(row.as_deref(), Some(newest.as_str()), "after {step}");
        }
    };
    agree("generate").await;
    assert_eq!(app.activate(key, "m1").await.status, StatusCode::OK);
    agree("activate").await;
    on_pool!(&app.db, pool => sqlx::query("UPDATE license_view SET last_hash = NULL").execute(pool).await.map(drop))
        .unwrap();
    keyledger_workers::ProjectionRunner::new(app.db.clone()).rebuild().await.unwrap();
    agree("a rebuild").await;
}

/// Appends fired at the same moment (on PostgreSQL they share statements:
/// the log's group commit) each keep their own all-or-nothing guard: rivals
/// for one sequence see exactly one winner, a stale append is turned away
/// without holding back the others, a two-event append lands whole, and
/// each read-model row names its own aggregate's last hash.
async fn appends_made_at_once_each_keep_their_own_guard_and_row(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    on_pool!(&app.db, pool => sqlx::query(
        "CREATE TABLE probe_view (id TEXT PRIMARY KEY, version BIGINT NOT NULL, last_hash TEXT NOT NULL)")
        .execute(pool).await.map(drop))
    .unwrap();
    let log = EventLog::new(app.db.clone());
    // Leaked so that appends running side by side can borrow them.
    let payload: &'static serde_json::Value = Box::leak(Box::new(json!({"probe": true})));
    let ids: &'static [String] = Vec::leak((0..40).map(|n| format!("probe-{n:02}")).collect());
    let event = |id: &'static str, sequence: i64| NewEvent {
        aggregate_type: "Probe",
        aggregate_id: id,
        sequence,
        event_type: "Probed",
        event_version: "1.0",
        payload,
        metadata: payload,
    };
    let append = |id: &'static str, events: Vec<NewEvent<'static>>, previous: String| {
        let log = log.clone();
        let projected = ProjectedRow {
            insert_into: "INSERT INTO probe_view (id, version, last_hash)",
            values: vec![
                SqlValue::Text(id.to_owned()),
                SqlValue::Int(events.last().unwrap().sequence),
                SqlValue::AppendedHash,
            ],
            on_conflict: "ON CONFLICT (id) DO UPDATE SET version = excluded.version, last_hash = excluded.last_hash \
                          WHERE probe_view.version < excluded.version"
                .to_owned(),
        };
        async move { log.append_after(&events, &previous, Some(&projected)).await }
    };

    let firsts = join_all(ids.iter().map(|id| append(id, vec![event(id, 1)], String::new()))).await;
    let firsts: Vec<String> = firsts.into_iter().map(|hashes| hashes.unwrap().remove(0)).collect();

    // 0-9: three rivals each for sequence 2; 10-19: one good append and
    // one chained to a hash that isn't the last; 20-39: one good append.
    let (mut labels, mut calls) = (Vec::new(), Vec::new());
    for (n, id) in ids.iter().enumerate() {
        for _ in 0..if n < 10 { 3 } else { 1 } {
            labels.push((n, true));
            calls.push(append(id, vec![event(id, 2)], firsts[n].clone()));
        }
        if (10..20).contains(&n) {
            labels.push((n, false));
            calls.push(append(id, vec![event(id, 2)], "0".repeat(64)));
        }
    }
    let two_at_once = append("probe-pair", vec![event("probe-pair", 1), event("probe-pair", 2)], String::new());
    let (outcomes, pair) = tokio::join!(join_all(calls), two_at_once);
    assert_eq!(pair.expect("a two-event append on an aggregate of its own").len(), 2);

    let mut winners: HashMap<usize, String> = HashMap::new();
    for ((n, chained), outcome) in labels.into_iter().zip(outcomes) {
        match outcome {
            Ok(hashes) => {
                assert!(chained, "an append chained to the wrong hash was taken ({})", ids[n]);
                assert!(winners.insert(n, hashes[0].clone()).is_none(), "two appends took sequence 2 of {}", ids[n]);
            }
            Err(AppendError::Conflict) => assert!(n < 20, "{} lost an append it had no rival for", ids[n]),
            Err(other) => panic!("{}: {other}", ids[n]),
        }
    }
    assert_eq!(winners.len(), 40, "every aggregate takes exactly one sequence 2");

    let report = log.verify(None).await.unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    for (n, id) in ids.iter().enumerate() {
        let (version, last_hash): (i64, String) = on_pool!(&app.db, pool => sqlx::query_as(
            "SELECT version, last_hash FROM probe_view WHERE id = $1").bind(id).fetch_one(pool).await)
        .unwrap();
        assert_eq!((version, &last_hash), (2, &winners[&n]), "{id}'s row");
    }

    // Decided on a state that is no longer the last: sequence 2 chained to
    // the first event again (stale) beside sequence 3 chained to the
    // winner (current), for every aggregate at once.
    let (mut labels, mut calls) = (Vec::new(), Vec::new());
    for (n, id) in ids.iter().enumerate() {
        labels.push((n, false));
        calls.push(append(id, vec![event(id, 2)], firsts[n].clone()));
        labels.push((n, true));
        calls.push(append(id, vec![event(id, 3)], winners[&n].clone()));
    }
    for ((n, current), outcome) in labels.into_iter().zip(join_all(calls).await) {
        match (current, outcome) {
            (true, Ok(_)) | (false, Err(AppendError::Conflict)) => {}
            (current, outcome) => {
                panic!("{} ({}): {:?}", ids[n], if current { "current" } else { "stale" }, outcome.err())
            }
        }
    }
    assert!(log.verify(None).await.unwrap().broken.is_empty());
}

/// Two readers of clones of one log, as a serving process's followers are,
/// each see every event once and in order while writers race; a third
/// reader coming after them is served from the shared window and reads
/// the database only once, at its end.
async fn readers_of_one_log_share_its_tail_and_each_sees_every_event_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let log = EventLog::new(app.db.clone());

    // Reads everything after `from` in pages of `page`, through the full
    // events or the payloads only, until idle for `patience` polls 50 ms
    // apart: a fixed quiet spell, not a wait for a count, since what it
    // must show is that nothing more (no duplicate) comes once every
    // event has.
    let reader = |payloads: bool, page: i64, patience: u32| {
        let log = log.clone();
        tokio::spawn(async move {
            let (mut cursor, mut seen, mut idle) = (Cursor::START, Vec::<(Cursor, String)>::new(), 0);
            while idle < patience {
                let batch: Vec<(Cursor, String)> = if payloads {
                    let rows = log.tail_payloads(cursor, page).await.expect("tail payloads");
                    rows.into_iter().map(|e| (e.cursor, format!("{}/{}", e.license_id, e.sequence))).collect()
                } else {
                    let rows = log.tail(cursor, page).await.expect("tail");
                    rows.into_iter().map(|e| (e.cursor, format!("{}/{}", e.license_id, e.sequence))).collect()
                };
                match batch.last() {
                    Some(&(last, _)) => {
                        assert!(last > cursor, "the tail moved backwards");
                        cursor = last;
                        seen.extend(batch);
                        idle = 0;
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            seen
        })
    };
    let (full, light) = (reader(false, 7, 40), reader(true, 50, 40));
    let writers = (0..8).map(|w| {
        let (app, key) = (&app, &user.key);
        async move {
            let license = app.generate(key, json!({"maxActivations": 3})).await;
            let license_key = license["licenseKey"].as_str().unwrap();
            for round in 0..3 {
                assert_eq!(app.activate(license_key, &format!("w{w}-m{round}")).await.status, StatusCode::OK);
            }
        }
    });
    join_all(writers).await;
    let (full, light) = (full.await.unwrap(), light.await.unwrap());

    const ALL: &str = "SELECT aggregate_id || '/' || sequence FROM events";
    let stored: Vec<String> = on_pool!(&app.db, pool => sqlx::query_scalar(ALL).fetch_all(pool).await).unwrap();
    assert_eq!(stored.len(), 8 * 4);
    let stored: HashSet<&str> = stored.iter().map(String::as_str).collect();
    for seen in [&full, &light] {
        assert_eq!(seen.len(), stored.len(), "every event once: no duplicates, none missing");
        assert_eq!(seen.iter().map(|(_, id)| id.as_str()).collect::<HashSet<_>>(), stored);
    }
    assert_eq!(full, light, "both readers saw one order");

    // Everything is in the shared window now: a late reader pages through
    // it and goes to the database only for what may follow its end.
    let before = log.tail_database_reads();
    let late = reader(true, 5, 1).await.unwrap();
    assert_eq!(late, full);
    assert_eq!(log.tail_database_reads() - before, 1, "only the read at the end went to the database");

    // Envelopes are built once for every reader of the window.
    let first = log.tail_envelopes(Cursor::START, 3).await.unwrap();
    let again = log.clone().tail_envelopes(Cursor::START, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.iter().zip(&again).all(|((_, a), (_, b))| std::sync::Arc::ptr_eq(a, b)), "one envelope an event");
    let logged = log.tail(Cursor::START, 3).await.unwrap();
    for ((cursor, envelope), event) in first.iter().zip(&logged) {
        assert_eq!((*cursor, &**envelope), (event.cursor, &event.envelope()));
    }
}
