//! Anomaly detection end to end: each kind provoked by its own story and
//! recorded exactly once, on the log's tail (SQLite and PostgreSQL) and on
//! the NATS stream; the suspend action; resolving; settings; and an
//! ordinary fleet that raises nothing.

use std::time::{Duration, Instant};

use futures::StreamExt;
use keyledger_api::Config;
use keyledger_app::anomalies::{AnomalySettings, Detector, Observed};
use keyledger_domain::LicenseEvent;
use keyledger_eventlog::EventLog;
use keyledger_tests::receiver::{Behaviour, Receiver};
use keyledger_tests::{
    eventually, eventually_result, on_both_backends, Backend, NatsServer, TestApp, TestTenant, TestUser, OPERATOR_TOKEN,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    each_kind_is_recorded_once,
    the_suspend_action_suspends_the_license_in_the_same_append,
    a_leaked_key_churning_a_free_seat_does_not_suspend_the_license,
    a_detector_suspends_a_license_again_only_after_its_cooldown,
    resolving_ends_the_episode,
    replaying_the_whole_log_finds_nothing_new,
    concurrent_setting_changes_are_all_kept,
    settings_are_checked_field_by_field_and_belong_to_admins,
    a_tenant_surge_is_found_once_and_suspends_nothing,
);

/// Client addresses come from `X-Forwarded-For`, as behind a proxy.
fn behind_proxy(config: &mut Config) {
    config.trusted_proxies = "127.0.0.1".to_owned();
}

async fn patch_settings(app: &TestApp, tenant: &TestTenant, patch: Value) -> Value {
    let reply = app.request(Method::PATCH, "/api/v1/anomaly-settings", Some(&tenant.admin_key), Some(patch)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn client_call(app: &TestApp, path: &str, key: &str, machine: &str, address: &str) -> StatusCode {
    app.client
        .post(format!("{}/api/v1/licenses/{path}", app.base))
        .header("x-forwarded-for", address)
        .json(&json!({ "licenseKey": key, "machineId": machine, "machineName": "m" }))
        .send()
        .await
        .unwrap()
        .status()
}

async fn license(app: &TestApp, user: &TestUser, seats: u32) -> (String, String) {
    let license = app.generate(&user.key, json!({ "maxActivations": seats })).await;
    (license["licenseKey"].as_str().unwrap().to_owned(), license["id"].as_str().unwrap().to_owned())
}

/// Moves the one seat of `key` across `moves` new machines.
async fn hop(app: &TestApp, key: &str, moves: usize) {
    succeeds(app, "activate", key, "hop-0").await;
    for n in 1..=moves {
        succeeds(app, "deactivate", key, &format!("hop-{}", n - 1)).await;
        succeeds(app, "activate", key, &format!("hop-{n}")).await;
    }
}

/// A client call from 10.1.1.1 that must succeed; the answer is shown if
/// it does not.
async fn succeeds(app: &TestApp, path: &str, key: &str, machine: &str) {
    let body = json!({ "licenseKey": key, "machineId": machine, "machineName": "m" });
    let reply = app
        .client
        .post(format!("{}/api/v1/licenses/{path}", app.base))
        .header("x-forwarded-for", "10.1.1.1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "{path} {machine}: {text}");
}

async fn stats(app: &TestApp, key: &str) -> Value {
    let reply = app.get("/api/monitoring/anomaly-stats", Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// Waits until the tenant's statistics count `total` anomalies.
async fn wait_for_total(app: &TestApp, tenant: &TestTenant, total: i64) -> Value {
    eventually_result(&format!("{total} anomalies"), Duration::from_secs(60), || async {
        let stats = stats(app, &tenant.admin_key).await;
        if stats["total_anomalies"] == total {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    })
    .await
}

async fn anomalies(app: &TestApp, tenant: &TestTenant, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/api/v1/anomalies{query}"), Some(&tenant.admin_key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["anomalies"].as_array().unwrap().clone()
}

/// Provokes one anomaly of each kind on its own license, then checks each
/// is recorded once, with its evidence, in the log and the list.
async fn provoke_each_kind(app: &TestApp) {
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let settings = patch_settings(
        app,
        &tenant,
        json!({"excessiveHeartbeats": {"windowSecs": 1, "maxCallsPerWindow": 2, "sustainedWindows": 3}}),
    )
    .await;
    assert_eq!(settings["licenseHopping"], json!({"enabled": true, "maxMoves": 3, "windowSecs": 86400}));

    let (hopper_key, hopper) = license(app, &user, 1).await;
    hop(app, &hopper_key, 5).await; // the fourth move passes the threshold, the fifth is the same episode

    let (roamer_key, roamer) = license(app, &user, 10).await;
    for n in 1..=7 {
        let address = format!("198.51.{n}.20");
        assert_eq!(client_call(app, "activate", &roamer_key, &format!("roam-{n}"), &address).await, StatusCode::OK);
    }

    let (chatty_key, chatty) = license(app, &user, 1).await;
    assert_eq!(client_call(app, "activate", &chatty_key, "chatty", "10.2.2.2").await, StatusCode::OK);
    // A fixed pace, as a device calling too often would keep: the calls
    // spread over more than five one-second windows are the behaviour
    // the detector is to find, so the pauses are the test's own timing.
    let until = Instant::now() + Duration::from_millis(5_500);
    while Instant::now() < until {
        assert_eq!(client_call(app, "validate", &chatty_key, "chatty", "10.2.2.2").await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let counted = wait_for_total(app, &tenant, 3).await;
    assert_eq!(
        counted,
        json!({"total_anomalies": 3, "unresolved": 3, "by_type": {
            "license_hopping": 1, "unusual_activation_pattern": 1, "excessive_heartbeats": 1}})
    );
    let found = anomalies(app, &tenant, "").await;
    let of = |kind: &str| found.iter().find(|a| a["type"] == kind).unwrap().clone();
    let hopping = of("license_hopping");
    assert_eq!(hopping["licenseId"], hopper.as_str());
    assert_eq!((hopping["evidence"]["count"].as_u64(), hopping["evidence"]["threshold"].as_u64()), (Some(4), Some(3)));
    assert_eq!(hopping["evidence"]["eventIds"].as_array().unwrap().len(), 8);
    let roaming = of("unusual_activation_pattern");
    assert_eq!(roaming["licenseId"], roamer.as_str());
    assert_eq!(roaming["evidence"]["count"], 6, "the sixth network passes the default of five");
    assert_eq!(roaming["evidence"]["addresses"].as_array().unwrap().len(), 6);
    let calling = of("excessive_heartbeats");
    assert_eq!(calling["licenseId"], chatty.as_str());
    assert_eq!(calling["evidence"]["count"], 3);
    assert_eq!(calling["resolved"], false);

    // Exactly once in the log too, and the calls behind it are there.
    assert_eq!(app.count_events(&hopper, "AnomalyDetected").await, 1);
    assert_eq!(app.count_events(&roamer, "AnomalyDetected").await, 1);
    assert_eq!(app.count_events(&chatty, "AnomalyDetected").await, 1);
    // The run is reported when it reaches three windows, not once a window.
    let chatter = app.get(&format!("/api/v1/licenses/{chatty}/events"), Some(&tenant.admin_key)).await;
    let reports: Vec<&Value> =
        chatter.body["events"].as_array().unwrap().iter().filter(|e| e["type"] == "LicenseCallRateExceeded").collect();
    assert!(!reports.is_empty() && reports.len() <= 2, "{}", chatter.body);
    assert_eq!(reports[0]["data"]["windows"], 3, "{}", chatter.body);
    // The event is in the license's audited history, by the system.
    let history = app.get(&format!("/api/v1/licenses/{hopper}/events"), Some(&tenant.admin_key)).await;
    let detected: Vec<&Value> =
        history.body["events"].as_array().unwrap().iter().filter(|e| e["type"] == "AnomalyDetected").collect();
    assert_eq!(detected.len(), 1, "{}", history.body);
    assert_eq!(detected[0]["metadata"]["actor_role"], "system");
    // Recording only: the license is not suspended.
    let view = app.get(&format!("/api/v1/licenses/{hopper}"), Some(&tenant.admin_key)).await;
    assert_ne!(view.body["status"], 4, "{}", view.body);

    // Filters.
    assert_eq!(anomalies(app, &tenant, "?type=license_hopping").await.len(), 1);
    assert_eq!(anomalies(app, &tenant, &format!("?licenseId={roamer}")).await.len(), 1);
    assert_eq!(anomalies(app, &tenant, "?resolved=true").await.len(), 0);
    let page = app.get("/api/v1/anomalies?limit=2", Some(&tenant.admin_key)).await;
    let next = page.body["nextBefore"].as_str().unwrap().to_owned();
    assert_eq!(anomalies(app, &tenant, &format!("?before={next}")).await.len(), 1);

    // Another tenant sees none of it; the operator sees all of it.
    let other = app.tenant("Other").await;
    assert_eq!(stats(app, &other.admin_key).await["total_anomalies"], 0);
    let id = hopping["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/v1/anomalies/{id}"), Some(&other.admin_key)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(stats(app, OPERATOR_TOKEN).await["total_anomalies"], 3);

    // The same log, read again by a fresh detector without the findings
    // recorded in it, finds the same anomalies, with the same ids.
    let settings = app.get("/api/v1/anomaly-settings", Some(&tenant.admin_key)).await.body;
    let settings: AnomalySettings = serde_json::from_value(settings).unwrap();
    let log = EventLog::new(app.db.clone());
    let mut detector = Detector::default();
    let mut again = Vec::new();
    for license_id in [&hopper, &roamer, &chatty] {
        for logged in log.history(license_id, 0, 10_000).await.unwrap() {
            if logged.event_type == "AnomalyDetected" {
                continue;
            }
            let event: LicenseEvent = serde_json::from_value(logged.payload.clone()).unwrap();
            let observed = Observed {
                event_id: &logged.event_id,
                license_id,
                sequence: logged.sequence,
                occurred_at: logged.metadata["occurred_at"].as_str().unwrap().parse().unwrap(),
                client_ip: logged.metadata["client_ip"].as_str(),
                event: &event,
            };
            again.extend(detector.observe(observed, &settings, true).iter().map(|f| f.anomaly_id()));
        }
    }
    let mut recorded: Vec<String> = found.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    recorded.sort();
    again.sort();
    assert_eq!(again, recorded);
}

async fn each_kind_is_recorded_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, behind_proxy).await;
    provoke_each_kind(&app).await;
}

/// The detector reads the relay's stream, and learns of its own findings
/// from it: the list fills only once AnomalyDetected came through NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_is_recorded_once_from_the_nats_stream() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |config| {
        behind_proxy(config);
        config.nats_url = Some(nats.url.clone());
    })
    .await;
    provoke_each_kind(&app).await;
    let health = app.get("/health", None).await;
    let detector =
        health.body["consumers"].as_array().unwrap().iter().find(|c| c["name"] == "anomaly-detector").cloned();
    assert_eq!(detector.unwrap()["state"], "running", "{}", health.body);
}

async fn the_suspend_action_suspends_the_license_in_the_same_append(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    // Every device counts as used (a heartbeat is recorded only a minute
    // after activation at the earliest, and a test does not wait an hour).
    let settings = json!({"action": "suspend", "deviceLivedSecs": 0, "licenseHopping": {"maxMoves": 1}});
    patch_settings(&app, &tenant, settings).await;
    let (key, id) = license(&app, &user, 1).await;
    hop(&app, &key, 2).await;
    wait_for_total(&app, &tenant, 1).await;
    let view = app.get(&format!("/api/v1/licenses/{id}"), Some(&tenant.admin_key)).await;
    assert_eq!(view.body["status"], 4, "suspended: {}", view.body);
    let events = app.raw_events(&id).await;
    let types: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types[types.len() - 2..], ["AnomalyDetected", "LicenseSuspended"]);
    let (_, payload, metadata) = &events[events.len() - 1];
    assert!(payload.contains("anomaly: license_hopping"), "{payload}");
    assert!(metadata.contains("\"system\""), "{metadata}");
    // A suspended license refuses the hopper's next machine.
    let reply = app.validate(&key, "hop-2").await;
    assert_eq!(reply.body["isValid"], false, "{}", reply.body);
}

/// A tenant whose first license hops past a threshold of one move: the
/// tenant, its user, the license's key and id, and the one anomaly found.
async fn one_hopper(app: &TestApp) -> (TestTenant, TestUser, String, String, Value) {
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    patch_settings(app, &tenant, json!({"licenseHopping": {"maxMoves": 1}})).await;
    let (key, id) = license(app, &user, 1).await;
    hop(app, &key, 3).await;
    wait_for_total(app, &tenant, 1).await;
    let anomaly = anomalies(app, &tenant, "").await.remove(0);
    (tenant, user, key, id, anomaly)
}

async fn resolving_ends_the_episode(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, user, key, id, anomaly) = one_hopper(&app).await;
    let path = format!("/api/v1/anomalies/{}/resolve", anomaly["id"].as_str().unwrap());
    let user_reply = app.post(&path, Some(&user.key), json!({})).await;
    assert_eq!(user_reply.status, StatusCode::FORBIDDEN, "{}", user_reply.body);
    let resolved = app.post(&path, Some(&tenant.admin_key), json!({"note": "moved offices"})).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    assert_eq!(resolved.body["resolved"], true);
    assert_eq!(resolved.body["resolutionNote"], "moved offices");
    assert_eq!(resolved.body["resolvedBy"], tenant.admin_key_id.as_str());
    let again = app.post(&path, Some(&tenant.admin_key), json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(app.count_events(&id, "AnomalyResolved").await, 1);
    assert_eq!(stats(&app, &tenant.admin_key).await["unresolved"], 0);

    // Hopping on after the review is a new episode.
    assert_eq!(client_call(&app, "deactivate", &key, "hop-3", "10.1.1.1").await, StatusCode::OK);
    assert_eq!(client_call(&app, "activate", &key, "hop-4", "10.1.1.1").await, StatusCode::OK);
    let stats = wait_for_total(&app, &tenant, 2).await;
    assert_eq!(stats["unresolved"], 1);
}

async fn settings_are_checked_field_by_field_and_belong_to_admins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let defaults = app.get("/api/v1/anomaly-settings", Some(&tenant.admin_key)).await;
    assert_eq!(
        defaults.body,
        json!({
            "action": "record",
            "deviceLivedSecs": 3600,
            "suspendCooldownSecs": 604800,
            "licenseHopping": {"enabled": true, "maxMoves": 3, "windowSecs": 86400},
            "unusualActivationPattern": {"enabled": true, "maxNetworks": 5, "windowSecs": 86400, "tenantSurge": {
                "enabled": true, "factor": 10, "minActivations": 50, "trailingHours": 168, "minHistoryHours": 24}},
            "excessiveHeartbeats": {"enabled": true, "maxCallsPerWindow": 2, "windowSecs": 60, "sustainedWindows": 5},
        })
    );
    for (patch, field) in [
        (json!({"licenseHopping": {"maxMoves": 0}}), "licenseHopping.maxMoves"),
        (json!({"licenseHoping": {}}), "licenseHoping"),
        (json!({"excessiveHeartbeats": {"windowSecs": "60"}}), "excessiveHeartbeats.windowSecs"),
        (json!({"action": "delete"}), "action"),
        (json!({"deviceLivedSecs": 86401}), "deviceLivedSecs"),
    ] {
        let reply = app.request(Method::PATCH, "/api/v1/anomaly-settings", Some(&tenant.admin_key), Some(patch)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["field"], field, "{}", reply.body);
    }
    let unchanged = app.get("/api/v1/anomaly-settings", Some(&tenant.admin_key)).await;
    assert_eq!(unchanged.body, defaults.body, "a refused patch changes nothing");
    let changed = patch_settings(&app, &tenant, json!({"unusualActivationPattern": {"enabled": false}})).await;
    assert_eq!(changed["unusualActivationPattern"]["enabled"], false);
    assert_eq!(changed["unusualActivationPattern"]["maxNetworks"], 5);
    for key in [&user.key, OPERATOR_TOKEN] {
        let reply = app.get("/api/v1/anomaly-settings", Some(key)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    }
    assert_eq!(app.get("/api/v1/anomalies", Some(&user.key)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/monitoring/anomaly-stats", None).await.status, StatusCode::UNAUTHORIZED);
    let bad = app.get("/api/v1/anomalies?type=everything", Some(&tenant.admin_key)).await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("type")));
}

/// A thousand licenses, each activating one to three machines once and
/// validating within its allowance: nothing is found. A hopper at the end
/// is the sentinel: once its anomaly is listed, the detector has read
/// every event of the fleet before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_fleet_raises_no_anomaly() {
    let app = TestApp::spawn_with(Backend::Sqlite, behind_proxy).await;
    let tenant = app.tenant("Fleet").await;
    let user = app.user(&tenant, "u").await;
    let app = &app;
    let user = &user;
    futures::stream::iter(0..1000u32)
        .for_each_concurrent(16, |n| async move {
            let machines = 1 + n % 3;
            let (key, _) = license(app, user, machines).await;
            // Each customer's machines sit in one office network.
            let office = format!("100.{}.{}.", 64 + n / 250, n % 250);
            for m in 0..machines {
                let (machine, address) = (format!("fleet-{n}-{m}"), format!("{office}{}", 10 + m));
                assert_eq!(client_call(app, "activate", &key, &machine, &address).await, StatusCode::OK);
                for _ in 0..2 {
                    assert_eq!(client_call(app, "validate", &key, &machine, &address).await, StatusCode::OK);
                }
            }
        })
        .await;
    let (sentinel_key, sentinel) = license(app, user, 1).await;
    hop(app, &sentinel_key, 4).await;
    let stats = wait_for_total(app, &tenant, 1).await;
    assert_eq!(stats["by_type"]["license_hopping"], 1, "only the sentinel: {stats}");
    let found = anomalies(app, &tenant, "").await;
    assert_eq!(found[0]["licenseId"], sentinel.as_str());
    const SQL: &str = "SELECT COUNT(*) FROM events WHERE event_type = 'LicenseCallRateExceeded'";
    let over: i64 =
        keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar(SQL).fetch_one(pool).await).unwrap();
    assert_eq!(over, 0, "no device went over its allowance");
}

/// `anomaly.detected` reaches a webhook endpoint subscribed to `anomaly.*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_is_delivered_as_a_webhook() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.webhook_allow_private_networks = true).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let reply = app
        .post("/api/v1/webhooks", Some(&tenant.admin_key), json!({"url": receiver.url, "events": ["anomaly.*"]}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let secret = reply.body["secret"].as_str().unwrap().to_owned();
    let (key, id) = license(&app, &user, 1).await;
    hop(&app, &key, 4).await;
    let received = receiver.wait_until("anomaly.detected", 30, |r| !r.is_empty()).await;
    Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
    let payload = received[0].payload();
    assert_eq!(payload["type"], "anomaly.detected");
    assert_eq!(payload["data"]["licenseId"], id.as_str());
    assert_eq!(payload["data"]["data"]["kind"], "license_hopping");
}

/// The detector's checkpoint and table wiped and the whole log read again
/// (as the README says to do): the table comes back as it was, resolution
/// included, and a resolved anomaly is not recorded a second time.
async fn replaying_the_whole_log_finds_nothing_new(backend: Backend) {
    let (app, stop) = TestApp::spawn_stoppable(backend, |_| {}).await;
    let (tenant, user, _, hopper, first) = one_hopper(&app).await;
    let path = format!("/api/v1/anomalies/{}/resolve", first["id"].as_str().unwrap());
    assert_eq!(app.post(&path, Some(&tenant.admin_key), json!({})).await.status, StatusCode::OK);
    stop.stop().await;

    for sql in ["DELETE FROM consumer_checkpoints WHERE name = 'anomaly-detector'", "DELETE FROM anomalies"] {
        keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query(sql).execute(pool).await.map(drop)).unwrap();
    }
    let again = app.another_server().await;
    // The sentinel's anomaly comes after the hopper's events in the log.
    let (sentinel_key, _) = license(&again, &user, 1).await;
    hop(&again, &sentinel_key, 2).await;
    let stats = wait_for_total(&again, &tenant, 2).await;
    assert_eq!(stats["unresolved"], 1, "{stats}");
    assert_eq!(again.count_events(&hopper, "AnomalyDetected").await, 1);
    let replayed =
        again.get(&format!("/api/v1/anomalies/{}", first["id"].as_str().unwrap()), Some(&tenant.admin_key)).await;
    assert_eq!(replayed.body["resolved"], true, "{}", replayed.body);
    assert_eq!(replayed.body["evidence"], first["evidence"]);
}

/// Changes of different settings sent at once are all kept: each is
/// applied to the settings as the one before left them.
async fn concurrent_setting_changes_are_all_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let patches = [
        json!({"licenseHopping": {"maxMoves": 7}}),
        json!({"unusualActivationPattern": {"maxNetworks": 9}}),
        json!({"excessiveHeartbeats": {"sustainedWindows": 11}}),
        json!({"action": "suspend"}),
        json!({"licenseHopping": {"windowSecs": 3600}}),
        json!({"excessiveHeartbeats": {"maxCallsPerWindow": 4}}),
        json!({"unusualActivationPattern": {"tenantSurge": {"factor": 20}}}),
    ];
    futures::future::join_all(patches.into_iter().map(|patch| patch_settings(&app, &tenant, patch))).await;
    let settings = app.get("/api/v1/anomaly-settings", Some(&tenant.admin_key)).await.body;
    assert_eq!(
        settings,
        json!({
            "action": "suspend",
            "deviceLivedSecs": 3600,
            "suspendCooldownSecs": 604800,
            "licenseHopping": {"enabled": true, "maxMoves": 7, "windowSecs": 3600},
            "unusualActivationPattern": {"enabled": true, "maxNetworks": 9, "windowSecs": 86400, "tenantSurge": {
                "enabled": true, "factor": 20, "minActivations": 50, "trailingHours": 168, "minHistoryHours": 24}},
            "excessiveHeartbeats": {"enabled": true, "maxCallsPerWindow": 4, "windowSecs": 60, "sustainedWindows": 11},
        })
    );
}

/// A tenant's activations in one hour passing its threshold: one finding,
/// on the license whose activation passed it, with the tenant's rate as
/// evidence; the tenant asks for suspension, and a surge suspends nothing.
async fn a_tenant_surge_is_found_once_and_suspends_nothing(backend: Backend) {
    let app = &TestApp::spawn_with(backend, behind_proxy).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    patch_settings(
        app,
        &tenant,
        json!({"action": "suspend", "unusualActivationPattern": {"tenantSurge": {"minActivations": 5, "minHistoryHours": 0}}}),
    )
    .await;
    // The hour is the unit: don't let the run straddle two. A fixed wait:
    // it waits for the clock to reach the next hour, not for the server.
    let into_hour = chrono::Utc::now().timestamp().rem_euclid(3600);
    if into_hour > 3590 {
        tokio::time::sleep(Duration::from_secs((3601 - into_hour) as u64)).await;
    }
    let mut ids = Vec::new();
    for n in 1..=9 {
        let (key, id) = license(app, &user, 1).await;
        assert_eq!(client_call(app, "activate", &key, "m", &format!("192.0.2.{n}")).await, StatusCode::OK);
        ids.push(id);
    }
    wait_for_total(app, &tenant, 1).await;
    // A fixed wait: it looks for the absence of a second finding, which
    // nothing signals; one would have come by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let found = anomalies(app, &tenant, "").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let surge = &found[0];
    assert_eq!(surge["type"], "unusual_activation_pattern");
    assert_eq!(surge["licenseId"], ids[5].as_str(), "the sixth activation passed the floor of five");
    let evidence = &surge["evidence"];
    assert_eq!((evidence["count"].as_u64(), evidence["threshold"].as_u64()), (Some(6), Some(5)));
    assert_eq!(evidence["trailingPerHour"], 0);
    assert_eq!(evidence["addresses"], json!(["192.0.2.6"]));
    let started: chrono::DateTime<chrono::Utc> = evidence["windowStartedAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(started.timestamp() % 3600, 0, "the window is a clock hour");
    let view = app.get(&format!("/api/v1/licenses/{}", ids[5]), Some(&tenant.admin_key)).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_ne!(view.body["status"], 4, "not suspended: {}", view.body);
}

/// Someone holding a leaked key and the license's one free seat activates
/// and deactivates five machines (ten requests) with the tenant's action
/// `suspend`: the hopping is recorded, and the rightful machine on the
/// other seat keeps validating. The same churn beside `deviceLivedSecs: 0`
/// (every device counts as used) does suspend: the test can fail.
async fn a_leaked_key_churning_a_free_seat_does_not_suspend_the_license(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    patch_settings(&app, &tenant, json!({"action": "suspend"})).await;
    let (key, id) = license(&app, &user, 2).await;
    assert_eq!(client_call(&app, "activate", &key, "rightful", "10.1.1.1").await, StatusCode::OK);
    assert_eq!(client_call(&app, "heartbeat", &key, "rightful", "10.1.1.1").await, StatusCode::OK);
    let churn = |key: String| {
        let app = &app;
        async move {
            for n in 0..5 {
                let machine = format!("leak-{n}");
                assert_eq!(client_call(app, "activate", &key, &machine, "10.9.9.9").await, StatusCode::OK);
                assert_eq!(client_call(app, "deactivate", &key, &machine, "10.9.9.9").await, StatusCode::OK);
            }
        }
    };
    churn(key.clone()).await;
    wait_for_total(&app, &tenant, 1).await;
    assert_eq!(anomalies(&app, &tenant, "?type=license_hopping").await.len(), 1, "the churn is recorded");
    assert_eq!(app.count_events(&id, "LicenseSuspended").await, 0);
    let reply = app.validate(&key, "rightful").await;
    assert_eq!(reply.body["isValid"], true, "the rightful machine keeps working: {}", reply.body);

    // Counting every device as used, the same churn suspends.
    let other = app.tenant("Other").await;
    let other_user = app.user(&other, "u").await;
    patch_settings(&app, &other, json!({"action": "suspend", "deviceLivedSecs": 0})).await;
    let (other_key, other_id) = license(&app, &other_user, 2).await;
    assert_eq!(client_call(&app, "activate", &other_key, "rightful", "10.1.1.1").await, StatusCode::OK);
    churn(other_key.clone()).await;
    wait_for_total(&app, &other, 1).await;
    eventually("the license to be suspended", std::time::Duration::from_secs(10), || async {
        (app.count_events(&other_id, "LicenseSuspended").await == 1).then_some(())
    })
    .await;
}

/// A license suspended by a detector, reinstated and its anomaly resolved,
/// hops again at once: the new episode is recorded, and the license is not
/// suspended a second time within `suspendCooldownSecs`.
async fn a_detector_suspends_a_license_again_only_after_its_cooldown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    // Every device counts as used (a heartbeat is recorded only a minute
    // after activation at the earliest, and a test does not wait an hour).
    let settings = json!({"action": "suspend", "deviceLivedSecs": 0, "licenseHopping": {"maxMoves": 1}});
    patch_settings(&app, &tenant, settings).await;
    let (key, id) = license(&app, &user, 1).await;
    hop(&app, &key, 2).await;
    wait_for_total(&app, &tenant, 1).await;
    assert_eq!(app.count_events(&id, "LicenseSuspended").await, 1);
    let anomaly = anomalies(&app, &tenant, "").await.remove(0);
    let path = format!("/api/v1/anomalies/{}/resolve", anomaly["id"].as_str().unwrap());
    assert_eq!(app.post(&path, Some(&tenant.admin_key), json!({})).await.status, StatusCode::OK);
    let reinstate = app.post(&format!("/api/v1/licenses/reinstate/{id}"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(reinstate.status, StatusCode::OK, "{}", reinstate.body);

    // The same hopping again, past the threshold again.
    for n in 3..=5 {
        let previous = format!("hop-{}", n - 1);
        assert_eq!(client_call(&app, "deactivate", &key, &previous, "10.1.1.1").await, StatusCode::OK);
        assert_eq!(client_call(&app, "activate", &key, &format!("hop-{n}"), "10.1.1.1").await, StatusCode::OK);
    }
    wait_for_total(&app, &tenant, 2).await;
    assert_eq!(app.count_events(&id, "LicenseSuspended").await, 1, "not suspended again within the cooldown");
    let reply = app.validate(&key, "hop-5").await;
    assert_eq!(reply.body["isValid"], true, "{}", reply.body);
}
