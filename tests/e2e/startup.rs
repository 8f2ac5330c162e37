//! Starting up: the operator token, and read models that a crash left
//! behind the log.

use std::time::Duration;

use keyledger_api::{rebuild_projections, Application};
use keyledger_eventlog::{on_pool, Backend as DbBackend};
use keyledger_tests::{eventually, eventually_result, on_both_backends, test_config, Backend, Licensed, TestApp};

use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    a_write_whose_projection_was_lost_converges_without_a_restart,
    servers_sharing_a_database_converge_and_a_rebuild_changes_nothing,
    validate_on_one_server_follows_writes_made_on_another,
    read_models_left_behind_by_a_crash_are_caught_up_at_start,
    a_long_history_loads_from_its_snapshot_and_agrees_with_a_full_replay,
    a_rebuild_mends_a_damaged_read_model,
    a_rebuild_writes_only_the_rows_that_differ,
    an_event_and_its_read_model_row_are_written_together_or_not_at_all,
    a_lease_has_one_holder_and_a_standby_takes_over,
    two_servers_on_one_database_run_each_once_per_database_job_once,
    a_restart_answers_at_once_and_lists_only_the_whole_view,
);

async fn view_row(app: &TestApp, license_id: &str) -> (i64, String) {
    const SQL: &str = "SELECT version, state FROM license_view WHERE license_id = $1";
    on_pool!(&app.db, pool => sqlx::query_as(SQL).bind(license_id).fetch_one(pool).await).expect("view row")
}

async fn put_view_row(app: &TestApp, license_id: &str, version: i64, state: &str) {
    const SQL: &str = "UPDATE license_view SET version = $1, state = $2 WHERE license_id = $3";
    on_pool!(&app.db, pool => sqlx::query(SQL).bind(version).bind(state).bind(license_id).execute(pool).await.map(drop))
        .expect("update view row");
}

async fn delete_view_row(app: &TestApp, license_id: &str) {
    const SQL: &str = "DELETE FROM license_view WHERE license_id = $1";
    on_pool!(&app.db, pool => sqlx::query(SQL).bind(license_id).execute(pool).await.map(drop))
        .expect("delete view row");
}

/// Appends an activation straight to the event store, as a process that
/// died right after appending would leave it: no read-model update.
async fn append_without_projecting(app: &TestApp, license_id: &str, machine_id: &str) {
    use cqrs_es::event_sink::EventSink;
    use cqrs_es::{Aggregate, EventStore};
    use keyledger_domain::{LicenseCommand, MachineId, MachineName};

    let store = keyledger_eventlog::license_event_store(&app.db);
    let mut context = store.load_aggregate(license_id).await.expect("load");
    let sink = EventSink::default();
    let command = LicenseCommand::ActivateLicense {
        machine: MachineId::parse(machine_id).unwrap().hash(b"any key: only the row matters here"),
        machine_name: MachineName::parse(Some("appended-directly")).unwrap(),
        details: Default::default(),
        device_number: None,
        at: chrono::Utc::now(),
    };
    context.aggregate.handle(command, &(), &sink).await.expect("activate");
    let metadata = std::collections::HashMap::from([("tenant_id".to_owned(), context.aggregate.tenant_id.to_string())]);
    store.commit(sink.collect().await, context, metadata).await.expect("append");
}

async fn a_write_whose_projection_was_lost_converges_without_a_restart(backend: Backend) {
    let Licensed { app, user, id, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    append_without_projecting(&app, &id, "m1").await;
    let info = eventually_result("the runner to project the event", Duration::from_secs(10), || async {
        let info = app.get(&format!("/api/v1/licenses/{id}"), Some(&user.key)).await;
        if info.body["activations"] == 1 {
            Ok(info)
        } else {
            Err(info.body.to_string())
        }
    })
    .await;
    assert_eq!(info.body["machineName"], "appended-directly");
    assert_eq!(view_row(&app, &id).await.0, 2);
}

async fn all_view_rows(app: &TestApp) -> Vec<(String, i64, String, Option<String>)> {
    const SQL: &str = "SELECT license_id, version, state, last_hash FROM license_view ORDER BY license_id";
    on_pool!(&app.db, pool => sqlx::query_as(SQL).fetch_all(pool).await).expect("view rows")
}

async fn servers_sharing_a_database_converge_and_a_rebuild_changes_nothing(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let second = first.another_server().await;
    let tenant = first.tenant("Acme").await;
    let user = first.user(&tenant, "u").await;
    // Licenses made on one server and changed on the other, concurrently.
    futures::future::join_all((0..8).map(|i| {
        let (first, second, user) = (&first, &second, &user);
        async move {
            let (maker, changer) = if i % 2 == 0 { (first, second) } else { (second, first) };
            let license = maker.generate(&user.key, json!({"maxActivations": 2})).await;
            let key = license["licenseKey"].as_str().unwrap();
            assert_eq!(changer.activate(key, "m1").await.status, StatusCode::OK);
            assert_eq!(maker.activate(key, "m2").await.status, StatusCode::OK);
            let body = json!({"licenseKey": key, "machineId": "m1"});
            assert_eq!(changer.post("/api/v1/licenses/deactivate", None, body).await.status, StatusCode::OK);
        }
    }))
    .await;
    let lost = first.generate(&user.key, json!({})).await;
    append_without_projecting(&first, lost["id"].as_str().unwrap(), "m9").await;

    // Wait until the runner has followed the whole log: past the last
    // committed event, not merely to what the tail shows right now (an
    // open transaction elsewhere on the cluster can hold that back).
    let log = keyledger_eventlog::EventLog::new(first.db.clone());
    let end = log.committed_end().await.unwrap().expect("events");
    eventually("the runner to reach the end of the log", Duration::from_secs(10), || async {
        (log.checkpoint(keyledger_workers::LICENSE_VIEW_RUNNER).await.unwrap() >= end).then_some(())
    })
    .await;
    let live = all_view_rows(&first).await;
    assert_eq!(live.len(), 9);
    // Every row is at its license's last event...
    for (license_id, version, _, _) in &live {
        let events = log.history(license_id, 0, 1000).await.unwrap();
        assert_eq!(*version, events.last().unwrap().sequence, "license {license_id}");
    }
    // ...and rebuilding from the log gives the same rows, byte for byte,
    // whatever the server's pool (the rebuild reads key ranges at once on
    // connections of their own while it writes on others).
    rebuild_projections(&first.config(), None).await.expect("rebuild");
    assert_eq!(all_view_rows(&first).await, live);
    let mut one_connection = first.config();
    one_connection.db_max_connections = 1;
    rebuild_projections(&one_connection, None).await.expect("rebuild with a pool of one");
    assert_eq!(all_view_rows(&first).await, live);
    let report = keyledger_api::verify_log(&one_connection, None, None).await.expect("verify with a pool of one").0;
    assert_eq!((report.licenses, report.broken.len()), (9, 0), "{report:?}");
}

async fn a_long_history_loads_from_its_snapshot_and_agrees_with_a_full_replay(backend: Backend) {
    // With no heartbeat interval every validation appends a heartbeat.
    let app = TestApp::spawn_with(backend, |config| config.heartbeat_interval_secs = 0).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({"maxActivations": 2})).await;
    let (key, id) = (license["licenseKey"].as_str().unwrap(), license["id"].as_str().unwrap());
    app.activate(key, "m1").await;
    for _ in 0..250 {
        assert_eq!(app.validate(key, "m1").await.body["isValid"], true);
    }
    assert_eq!(app.count_events(id, "HeartbeatRecorded").await, 250);
    const SNAPSHOT: &str = "SELECT version FROM license_snapshots WHERE license_id = $1";
    let snapshot: i64 = on_pool!(&app.db, pool => sqlx::query_scalar(SNAPSHOT).bind(id).fetch_one(pool).await).unwrap();
    assert_eq!(snapshot, 200);

    // Commands loading from the log really load from it: a doctored one
    // (one seat only) wins over the history until it is removed. A second
    // server has no state of its own for the license yet, so it loads.
    const STATE: &str = "SELECT state FROM license_snapshots WHERE license_id = $1";
    let honest: String = on_pool!(&app.db, pool => sqlx::query_scalar(STATE).bind(id).fetch_one(pool).await).unwrap();
    let doctored = honest.replace("\"max_activations\":2", "\"max_activations\":1");
    assert_ne!(doctored, honest);
    const PUT: &str = "UPDATE license_snapshots SET state = $1 WHERE license_id = $2";
    on_pool!(&app.db, pool => sqlx::query(PUT).bind(&doctored).bind(id).execute(pool).await.map(drop)).unwrap();
    // The second server must start with the tail past every event, or its
    // follower would hand it the last event's hash and it would decide from
    // memory (a transaction open elsewhere on PostgreSQL holds the tail back).
    let log = keyledger_eventlog::EventLog::new(app.db.clone());
    eventually("the tail to reach the last committed event", Duration::from_secs(30), || async {
        (log.end_cursor().await.unwrap() == log.committed_end().await.unwrap()).then_some(())
    })
    .await;
    // Nor may the read model name that hash (as a row written before
    // migration 0010 doesn't), or the second server would decide from the
    // memory it loads from it.
    const FORGET: &str = "UPDATE license_view SET last_hash = NULL WHERE license_id = $1";
    on_pool!(&app.db, pool => sqlx::query(FORGET).bind(id).execute(pool).await.map(drop)).unwrap();
    let loading = app.another_server().await;
    assert_eq!(loading.activate(key, "m2").await.body["code"], "TOO_MANY_MACHINES");
    on_pool!(&app.db, pool => sqlx::query(PUT).bind(&honest).bind(id).execute(pool).await.map(drop)).unwrap();

    // A command on top of the snapshot sees the whole history...
    assert_eq!(app.activate(key, "m2").await.status, StatusCode::OK);
    assert_eq!(app.activate(key, "m3").await.body["code"], "TOO_MANY_MACHINES");
    let live = all_view_rows(&app).await;
    rebuild_projections(&app.config(), None).await.unwrap();
    assert_eq!(all_view_rows(&app).await, live, "snapshot + tail differs from a full replay");

    // ...and an unreadable snapshot only costs a full replay.
    const SPOIL: &str = "UPDATE license_snapshots SET state = 'not json' WHERE license_id = $1";
    on_pool!(&app.db, pool => sqlx::query(SPOIL).bind(id).execute(pool).await.map(drop)).unwrap();
    let body = json!({"licenseKey": key, "machineId": "m2"});
    assert_eq!(app.post("/api/v1/licenses/deactivate", None, body).await.status, StatusCode::OK);
    let live = all_view_rows(&app).await;
    rebuild_projections(&app.config(), None).await.unwrap();
    assert_eq!(all_view_rows(&app).await, live);
}

async fn validate_on_one_server_follows_writes_made_on_another(backend: Backend) {
    let Licensed { app: first, tenant, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    let second = first.another_server().await;
    // Known to the first server's memory before the second writes.
    assert_eq!(first.validate(&key, "m1").await.body["isValid"], false);

    // An activation elsewhere is honoured at once: the first server's
    // memory says no, and the refusal is checked against the log.
    assert_eq!(second.activate(&key, "m1").await.status, StatusCode::OK);
    assert_eq!(first.validate(&key, "m1").await.body["isValid"], true);

    // A suspension elsewhere reaches the first server's memory through the
    // tail within moments.
    let suspended = second.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(suspended.status, StatusCode::OK);
    let reply = eventually_result("the suspension to reach the other server", Duration::from_secs(5), || async {
        let reply = first.validate(&key, "m1").await;
        if reply.body["isValid"] == false {
            Ok(reply)
        } else {
            Err(reply.body.to_string())
        }
    })
    .await;
    assert_eq!(reply.body["error"], "License is suspended");
}

async fn read_models_left_behind_by_a_crash_are_caught_up_at_start(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let behind = app.generate(&user.key, json!({})).await;
    let behind_id = behind["id"].as_str().unwrap();
    let (_, generated_state) = view_row(&app, behind_id).await;
    app.activate(behind["licenseKey"].as_str().unwrap(), "m1").await;
    let missing = app.generate(&user.key, json!({})).await;
    let missing_id = missing["id"].as_str().unwrap();

    // As if the process died after appending each license's last events
    // but before projecting them.
    put_view_row(&app, behind_id, 1, &generated_state).await;
    delete_view_row(&app, missing_id).await;

    let restarted = app.another_server().await;
    let info = restarted.get(&format!("/api/v1/licenses/{behind_id}"), Some(&user.key)).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body["status"], 1);
    assert_eq!(info.body["machineName"], "test-machine");
    let found = restarted.get(&format!("/api/v1/licenses/{missing_id}"), Some(&user.key)).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(view_row(&restarted, behind_id).await.0, 2);
}

/// Makes every update of `license_view` fail until [`allow_view_updates`].
async fn refuse_view_updates(app: &TestApp) {
    let statements: &[&str] = match app.db.backend() {
        DbBackend::Sqlite => &["CREATE TRIGGER refuse_view_updates BEFORE UPDATE ON license_view
                              BEGIN SELECT RAISE(ABORT, 'view updates refused by the test'); END"],
        DbBackend::Postgres => &[
            "CREATE FUNCTION refuse_view_updates() RETURNS trigger LANGUAGE plpgsql
               AS $$ BEGIN RAISE EXCEPTION 'view updates refused by the test'; END $$",
            "CREATE TRIGGER refuse_view_updates BEFORE UPDATE ON license_view
               FOR EACH ROW EXECUTE FUNCTION refuse_view_updates()",
        ],
    };
    for sql in statements {
        on_pool!(&app.db, pool => sqlx::query(sql).execute(pool).await.map(drop)).expect("create trigger");
    }
}

async fn allow_view_updates(app: &TestApp) {
    let sql = match app.db.backend() {
        DbBackend::Sqlite => "DROP TRIGGER refuse_view_updates",
        DbBackend::Postgres => "DROP TRIGGER refuse_view_updates ON license_view",
    };
    on_pool!(&app.db, pool => sqlx::query(sql).execute(pool).await.map(drop)).expect("drop trigger");
}

async fn an_event_and_its_read_model_row_are_written_together_or_not_at_all(backend: Backend) {
    let Licensed { app, key, id, .. } = Licensed::new(backend, json!({})).await;
    let (key, id) = (key.as_str(), id.as_str());
    let before = view_row(&app, id).await;

    // The row can't be written: the activation fails whole.
    refuse_view_updates(&app).await;
    let refused = app.activate(key, "m1").await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", refused.body);
    assert_eq!(app.count_events(id, "LicenseActivated").await, 0, "the event was appended without its row");
    assert_eq!(view_row(&app, id).await, before);
    assert_eq!(app.validate(key, "m1").await.body["isValid"], false);

    // The client's retry, once the row can be written, lands both.
    allow_view_updates(&app).await;
    assert_eq!(app.activate(key, "m1").await.status, StatusCode::OK);
    assert_eq!(view_row(&app, id).await.0, 2);
    assert_eq!(app.count_events(id, "LicenseActivated").await, 1);
    assert_eq!(app.validate(key, "m1").await.body["isValid"], true);
}

async fn a_rebuild_mends_a_damaged_read_model(backend: Backend) {
    let Licensed { app, user, license, id, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    let id = id.as_str();
    let (_, generated_state) = view_row(&app, id).await;
    app.activate(license["licenseKey"].as_str().unwrap(), "m1").await;
    let (version, live_state) = view_row(&app, id).await;

    // A damaged row that claims to be current: catch-up can't see it.
    put_view_row(&app, id, version, &generated_state).await;
    let rebuilt = rebuild_projections(&app.config(), Some("license_view")).await.expect("rebuild");
    assert_eq!(rebuilt, 1);
    assert_eq!(view_row(&app, id).await, (version, live_state));
    let info = app.get(&format!("/api/v1/licenses/{id}"), Some(&user.key)).await;
    assert_eq!(info.body["activations"], 1);
}

/// Every row of `license_view`, in id order, the columns a rebuild sets.
type ViewRows = Vec<(String, i64, String, Option<String>, String, i64, i64, String)>;

async fn view_rows(app: &TestApp) -> ViewRows {
    const SQL: &str =
        "SELECT license_id, version, state, last_hash, cull_at, number, CAST(deleted AS BIGINT), owner_id FROM license_view ORDER BY license_id";
    on_pool!(&app.db, pool => sqlx::query_as(SQL).fetch_all(pool).await).expect("view rows")
}

/// The ids of the `license_view` rows updated since the last call, as a
/// trigger installed by [`count_view_updates`] recorded them.
async fn view_updates(app: &TestApp) -> Vec<String> {
    let updated: Vec<String> = on_pool!(&app.db, pool => sqlx::query_scalar("SELECT license_id FROM view_updates ORDER BY license_id").fetch_all(pool).await)
        .expect("view updates");
    on_pool!(&app.db, pool => sqlx::query("DELETE FROM view_updates").execute(pool).await.map(drop)).expect("clear");
    updated
}

async fn count_view_updates(app: &TestApp) {
    let statements: &[&str] = match app.db.backend() {
        DbBackend::Sqlite => &[
            "CREATE TABLE view_updates (license_id TEXT NOT NULL)",
            "CREATE TRIGGER count_view_updates AFTER UPDATE ON license_view
             BEGIN INSERT INTO view_updates VALUES (NEW.license_id); END",
        ],
        DbBackend::Postgres => &[
            "CREATE TABLE view_updates (license_id text NOT NULL)",
            "CREATE FUNCTION count_view_update() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO view_updates VALUES (NEW.license_id); RETURN NEW; END $$",
            "CREATE TRIGGER count_view_updates AFTER UPDATE ON license_view
             FOR EACH ROW EXECUTE FUNCTION count_view_update()",
        ],
    };
    for sql in statements {
        on_pool!(&app.db, pool => sqlx::query(sql).execute(pool).await.map(drop)).expect(sql);
    }
}

/// A rebuild leaves a row that is already right unwritten (no page in
/// SQLite's log, no dead tuple in PostgreSQL) and rewrites one that
/// differs in any column, whatever the column.
async fn a_rebuild_writes_only_the_rows_that_differ(backend: Backend) {
    let Licensed { app, user, license, id, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    app.activate(license["licenseKey"].as_str().unwrap(), "m1").await;
    app.generate(&user.key, json!({})).await;
    let rows = view_rows(&app).await;
    assert_eq!(rows.len(), 2);
    count_view_updates(&app).await;

    assert_eq!(rebuild_projections(&app.config(), Some("license_view")).await.expect("rebuild"), 2);
    assert_eq!(view_updates(&app).await, Vec::<String>::new(), "an intact view is not written");
    assert_eq!(view_rows(&app).await, rows);

    // Columns outside the view's indexes and inside them: a SQLite
    // rebuild writes the two kinds by different statements.
    let damages = ["last_hash = ''", "state = '{}'", "deleted = 1", "cull_at = 'x'", "number = 99", "owner_id = 'x'"];
    for damage in damages {
        let sql = format!("UPDATE license_view SET {damage} WHERE license_id = $1");
        on_pool!(&app.db, pool => sqlx::query(&sql).bind(&id).execute(pool).await.map(drop)).expect("damage");
        assert_eq!(view_updates(&app).await, [id.clone()]);
        rebuild_projections(&app.config(), Some("license_view")).await.expect("rebuild");
        assert_eq!(view_updates(&app).await, [id.clone()], "{damage} was mended");
        assert_eq!(view_rows(&app).await, rows, "{damage} was mended");
    }
}

/// A SQLite rebuild reads each batch's indexed columns before it writes
/// the batch: while another connection (another process, as a running
/// server is) commits writes to the same file all along, each batch still
/// gets its turn to write instead of failing for the commit that came
/// between its read and its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rebuild_beside_another_writer_mends_every_row() {
    let Licensed { app, user, .. } = Licensed::new(Backend::Sqlite, json!({})).await;
    for _ in 0..99 {
        app.generate(&user.key, json!({})).await;
    }
    let rows = view_rows(&app).await;
    assert_eq!(rows.len(), 100);
    let other = sqlx::SqlitePool::connect(&app.database_url).await.expect("a second pool on the file");
    sqlx::query("CREATE TABLE other_writes (n integer)").execute(&other).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (other, stop) = (other.clone(), stop.clone());
        tokio::spawn(async move {
            let mut commits = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sqlx::query("INSERT INTO other_writes VALUES (1)").execute(&other).await.expect("the other writer");
                commits += 1;
            }
            commits
        })
    };
    for round in 0..10 {
        on_pool!(&app.db, pool => sqlx::query("UPDATE license_view SET last_hash = ''").execute(pool).await.map(drop))
            .expect("damage");
        rebuild_projections(&app.config(), Some("license_view"))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(view_rows(&app).await, rows, "round {round}: every row mended");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.await.unwrap();
    assert!(commits > 10, "the other writer committed all along: {commits}");
}

#[tokio::test]
async fn the_operator_token_is_generated_once_into_a_private_file() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path().to_path_buf());
    config.operator_token = None;

    let first = Application::build(config.clone()).await.expect("first start");
    let token = first.new_operator_token.clone().expect("a token is generated on first start");
    assert!(token.starts_with("klo_") && token.len() > 40);
    let path = data_dir.path().join("operator-token");
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    drop(first);

    let second = Application::build(config).await.expect("second start");
    assert!(second.new_operator_token.is_none(), "the token is shown only once");
    let base = format!("http://{}", second.local_addr());
    tokio::spawn(second.run_until(std::future::pending()));
    let reply = reqwest::Client::new()
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
}

/// A transaction open elsewhere holds the tail back; a rebuild still
/// replays everything committed before it began (it reads the log chain
/// by chain, not through the tail), without waiting for that transaction,
/// and leaves the runner before what the tail could not read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_rebuild_replays_what_an_open_transaction_holds_back_from_the_tail() {
    let Licensed { app, key, id, .. } = Licensed::new(Backend::Postgres, json!({})).await;
    let keyledger_eventlog::Database::Postgres(pool) = &app.db else { unreachable!("a PostgreSQL app") };
    let (_, generated_state) = view_row(&app, &id).await;

    let mut open = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *open).await.unwrap();
    assert_eq!(app.activate(&key, "m1").await.status, StatusCode::OK);
    put_view_row(&app, &id, 2, &generated_state).await; // damaged, at the current version

    tokio::time::timeout(Duration::from_secs(30), rebuild_projections(&app.config(), None))
        .await
        .expect("the rebuild does not wait for the open transaction")
        .expect("rebuild");
    let (version, state) = view_row(&app, &id).await;
    assert_eq!(version, 2);
    assert_ne!(state, generated_state, "the damaged row was mended");
    let log = keyledger_eventlog::EventLog::new(app.db.clone());
    let runner_at = log.checkpoint(keyledger_workers::LICENSE_VIEW_RUNNER).await.unwrap();
    let activation = log.history(&id, 0, 10).await.unwrap().pop().expect("the activation");
    assert!(runner_at < activation.cursor, "the runner still reads the held-back activation: {runner_at:?}");
    open.commit().await.unwrap();
}

#[tokio::test]
async fn rebuilding_an_unknown_read_model_is_refused() {
    let data_dir = tempfile::tempdir().unwrap();
    let error = rebuild_projections(&test_config(data_dir.path().to_path_buf()), Some("no_such_model")).await.err();
    assert!(error.expect("refused").to_string().contains("license_view"));
}

/// One holder at a time, and a standby takes over when the holder goes: an
/// advisory lock on PostgreSQL, a lock on a file beside the database on
/// SQLite.
async fn a_lease_has_one_holder_and_a_standby_takes_over(backend: Backend) {
    use keyledger_workers::Lease;
    let app = TestApp::spawn(backend).await;
    let mut holder = Lease::acquire(&app.db, "test-lease").await;
    assert!(holder.is_held().await);
    let db = app.db.clone();
    let standby = tokio::spawn(async move { Lease::acquire(&db, "test-lease").await });
    // A fixed wait: what is looked for is the standby not taking the lease
    // while it is held, which nothing signals.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!standby.is_finished(), "two holders at once");
    drop(holder);
    let mut taken_over = tokio::time::timeout(Duration::from_secs(5), standby)
        .await
        .expect("the standby takes over once the holder is gone")
        .unwrap();
    assert!(taken_over.is_held().await);
}

#[tokio::test]
async fn weak_secrets_are_refused_at_start() {
    let data_dir = tempfile::tempdir().unwrap();
    for token in ["short", "klk_looks_like_a_tenant_key_0123456789"] {
        let mut config = test_config(data_dir.path().to_path_buf());
        config.operator_token = Some(token.to_owned());
        let error = Application::build(config).await.err().expect("refused");
        assert!(error.to_string().contains("operator token"), "{error}");
    }
    let mut config = test_config(data_dir.path().to_path_buf());
    config.machine_id_secret = Some("short".to_owned());
    let error = Application::build(config).await.err().expect("refused");
    assert!(error.to_string().contains("KEYLEDGER_MACHINE_ID_SECRET"), "{error}");
}

/// Two servers on one database, as two processes would be (on SQLite, on
/// one data directory's file): every once-per-database consumer runs in
/// exactly one of them, and the other stands by.
async fn two_servers_on_one_database_run_each_once_per_database_job_once(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let second = first.another_server().await;
    let states = |health: &serde_json::Value, name: &str| {
        health["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["state"].as_str().unwrap_or_default().to_owned())
    };
    for name in [keyledger_workers::LICENSE_VIEW_RUNNER, "expiry-sweeper", "audit-checkpointer"] {
        let pair = eventually(&format!("{name} running in one server"), Duration::from_secs(10), || async {
            let (a, b) = (first.get("/health", None).await.body, second.get("/health", None).await.body);
            let pair = (states(&a, name)?, states(&b, name)?);
            let running = [&pair.0, &pair.1].iter().filter(|s| s.as_str() == "running").count();
            (running == 1).then_some(pair)
        })
        .await;
        assert!(pair.0 == "standby" || pair.1 == "standby", "{name}: {pair:?}");
    }
}

/// A restart serves before its validation view is loaded (in the
/// background): validate answers at once from the read model (from the
/// log where a row is behind its events), a listing
/// of the tenant's licenses waits for the whole view rather than showing
/// part of it, and `/health` says "loading" (503) until the view is whole.
async fn a_restart_answers_at_once_and_lists_only_the_whole_view(backend: Backend) {
    let Licensed { app, tenant, key, id, .. } = Licensed::new(backend, json!({})).await;
    let (_, generated_state) = view_row(&app, &id).await;
    assert_eq!(app.activate(&key, "m1").await.status, StatusCode::OK);
    // A row left behind its events (as a crash under an older release
    // leaves one): until the start-up catches it up, it must not answer.
    put_view_row(&app, &id, 1, &generated_state).await;
    for _ in 0..299 {
        app.generate(&tenant.admin_key, json!({})).await;
    }

    // Built as the binary builds it: nothing waits for the view here.
    let restarted = Application::build(app.config()).await.expect("server starts");
    let base = format!("http://{}", restarted.local_addr());
    tokio::spawn(restarted.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let validate = client
        .post(format!("{base}/api/v1/licenses/validate"))
        .json(&json!({"licenseKey": key, "machineId": "m1"}))
        .send();
    let stats = client.get(format!("{base}/api/monitoring/live-stats")).bearer_auth(&tenant.admin_key).send();
    let health = client.get(format!("{base}/health")).send();
    let (validate, stats, health) = tokio::join!(validate, stats, health);
    let validate: serde_json::Value = validate.unwrap().json().await.unwrap();
    assert_eq!(validate["isValid"], true, "{validate}");
    let stats: serde_json::Value = stats.unwrap().json().await.unwrap();
    assert_eq!(stats["metrics"]["active_licenses"], 300, "a listing sees every license: {stats}");
    let health = health.unwrap();
    let status = health.status();
    let body: serde_json::Value = health.json().await.unwrap();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(body["status"], "loading", "{body}");
        assert_eq!(body["validationView"]["loading"], true, "{body}");
    }
    let ready = eventually("the view to be whole", Duration::from_secs(20), || async {
        let body: serde_json::Value = client.get(format!("{base}/health")).send().await.ok()?.json().await.ok()?;
        (body["status"] == "healthy").then_some(body)
    })
    .await;
    assert_eq!(ready["validationView"], json!({"loading": false, "licenses": 300}));
    assert_eq!(view_row(&app, &id).await.0, 2, "the row behind its events was caught up");
}
