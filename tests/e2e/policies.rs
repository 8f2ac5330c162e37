//! License policies: heartbeats that free dead seats (and revive them),
//! transfer limits, overage, and the fields that set them.

use std::time::Duration;

use keyledger_tests::{eventually_result, on_both_backends, Backend, Licensed, TestApp, TestTenant, TestUser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    generate_and_edit_set_a_policy_and_bad_fields_are_named,
    a_silent_device_is_culled_once_and_answered_heartbeat_dead,
    a_device_that_keeps_calling_is_never_culled,
    a_revive_policy_brings_a_dead_device_back_on_its_next_call,
    the_transfer_limit_refuses_the_client_with_429_but_not_an_administrator,
    overage_admits_more_devices_than_seats,
    a_trial_runs_from_its_first_activation_and_a_perpetual_license_never_ends,
);

/// A server that sweeps dead devices every second, one tenant, one user.
async fn sweeping(backend: Backend) -> (TestApp, TestTenant, TestUser) {
    let app = TestApp::spawn_with(backend, |config| config.heartbeat_sweep_secs = 1).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    (app, tenant, user)
}

/// Generates a license with `body`; its key and id.
async fn license(app: &TestApp, user: &TestUser, body: Value) -> (String, String) {
    let license = app.generate(&user.key, body).await;
    (license["licenseKey"].as_str().unwrap().to_owned(), license["id"].as_str().unwrap().to_owned())
}

/// Waits up to fifteen seconds for the license to hold `count` events of
/// `event_type`; returns how many it holds.
async fn wait_for_events(app: &TestApp, id: &str, event_type: &str, count: i64) -> i64 {
    let what = format!("{count} {event_type} events of {id}");
    eventually_result(&what, Duration::from_secs(15), || async {
        let held = app.count_events(id, event_type).await;
        if held >= count {
            Ok(held)
        } else {
            Err(format!("{held} events"))
        }
    })
    .await
}

async fn generate_and_edit_set_a_policy_and_bad_fields_are_named(backend: Backend) {
    let body = json!({"maxActivations": 2, "policy": {
        "heartbeatDurationSecs": 600, "resurrection": "revive",
        "transferLimit": {"count": 3, "periodSecs": 86400}, "overage": "1.5", "maxUsers": 10,
    }});
    let Licensed { app, tenant, license, id, .. } = Licensed::new(backend, body).await;
    assert_eq!(
        license["policy"],
        json!({"heartbeatDurationSecs": 600, "resurrection": "revive",
               "transferLimit": {"count": 3, "periodSecs": 86400}, "overage": "1.5", "maxUsers": 10})
    );
    let path = format!("/api/v1/licenses/{id}");
    let edit = json!({"policy": {"heartbeatDurationSecs": null, "overage": "2", "transferLimit": null}});
    let edited = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(edit)).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(
        edited.body["policy"],
        json!({"heartbeatDurationSecs": null, "resurrection": "revive", "transferLimit": null,
               "overage": "2", "maxUsers": 10}),
        "fields left out keep their values, null removes"
    );
    // An edit of other fields keeps the policy.
    let seats = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"maxActivations": 3}))).await;
    assert_eq!(seats.body["policy"]["overage"], "2");

    for (bad, field) in [
        (json!({"heartbeatDurationSecs": 1}), "policy.heartbeatDurationSecs"),
        (json!({"heartbeatDurationSecs": "soon"}), "policy.heartbeatDurationSecs"),
        (json!({"resurrection": "maybe"}), "policy.resurrection"),
        (json!({"overage": "3"}), "policy.overage"),
        (json!({"transferLimit": {"count": 1}}), "policy.transferLimit.periodSecs"),
        (json!({"transferLimit": {"count": -1, "periodSecs": 60}}), "policy.transferLimit.count"),
        (json!({"maxUsers": 0}), "policy.maxUsers"),
    ] {
        let bad = json!({ "policy": bad });
        let reply = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(bad.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["field"], field, "{bad}: {}", reply.body);
    }
}

async fn a_silent_device_is_culled_once_and_answered_heartbeat_dead(backend: Backend) {
    let (app, tenant, user) = sweeping(backend).await;
    let (key, id) = license(&app, &user, json!({"policy": {"heartbeatDurationSecs": 2}})).await;
    assert_eq!(app.activate(&key, "laptop").await.status, StatusCode::OK);
    assert_eq!(app.validate(&key, "laptop").await.body["isValid"], true);

    assert_eq!(wait_for_events(&app, &id, "DeviceCulled", 1).await, 1, "culled within the wait");
    // A fixed wait: two more sweeps (one a second) pass, and what is
    // looked for is the absence of a second cull.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.count_events(&id, "DeviceCulled").await, 1, "culled once");
    let events = app.raw_events(&id).await;
    let (_, payload, metadata) = events.iter().find(|(kind, _, _)| kind == "DeviceCulled").unwrap();
    let metadata: Value = serde_json::from_str(metadata).unwrap();
    assert_eq!(metadata["actor_role"], "system", "{metadata}");
    assert!(payload.contains("last_seen_at"));

    let validated = app.validate(&key, "laptop").await;
    assert_eq!(validated.body["isValid"], false);
    assert_eq!(validated.body["code"], "HEARTBEAT_DEAD");
    let devices = app.get(&format!("/api/v1/licenses/{id}/devices"), Some(&tenant.admin_key)).await;
    assert_eq!(devices.body["devices"][0]["culled"], true, "{}", devices.body);
    assert_eq!(devices.body["devices"][0]["active"], false);
    // The seat is free for another machine, and the dead one may activate again.
    assert_eq!(app.activate(&key, "desktop").await.status, StatusCode::OK);
    let deactivate = json!({"licenseKey": key, "machineId": "desktop"});
    assert_eq!(app.post("/api/v1/licenses/deactivate", None, deactivate).await.status, StatusCode::OK);
    assert_eq!(app.activate(&key, "laptop").await.status, StatusCode::OK);
    assert_eq!(app.validate(&key, "laptop").await.body["isValid"], true);
}

async fn a_device_that_keeps_calling_is_never_culled(backend: Backend) {
    let (app, _, user) = sweeping(backend).await;
    let (key, id) = license(&app, &user, json!({"policy": {"heartbeatDurationSecs": 2}})).await;
    assert_eq!(app.activate(&key, "busy").await.status, StatusCode::OK);
    // Fixed waits: a call every half second for six seconds, well within
    // the two-second heartbeat duration, is the behaviour tested.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(app.validate(&key, "busy").await.body["isValid"], true);
    }
    assert_eq!(app.count_events(&id, "DeviceCulled").await, 0);
}

async fn a_revive_policy_brings_a_dead_device_back_on_its_next_call(backend: Backend) {
    let (app, _, user) = sweeping(backend).await;
    let (key, id) =
        license(&app, &user, json!({"policy": {"heartbeatDurationSecs": 2, "resurrection": "revive"}})).await;
    assert_eq!(app.activate(&key, "laptop").await.status, StatusCode::OK);
    assert_eq!(wait_for_events(&app, &id, "DeviceCulled", 1).await, 1);

    let revived = app.validate(&key, "laptop").await;
    assert_eq!(revived.body["isValid"], true, "{}", revived.body);
    assert_eq!(app.count_events(&id, "LicenseActivated").await, 2, "revived into a seat");
    // With the seat taken by another machine, the dead one can't come back.
    assert_eq!(wait_for_events(&app, &id, "DeviceCulled", 2).await, 2);
    assert_eq!(app.activate(&key, "desktop").await.status, StatusCode::OK);
    let refused = app.validate(&key, "laptop").await;
    assert_eq!(refused.status, StatusCode::OK);
    assert_eq!(refused.body["isValid"], false);
    assert_eq!(refused.body["code"], "TOO_MANY_MACHINES", "{}", refused.body);
}

async fn the_transfer_limit_refuses_the_client_with_429_but_not_an_administrator(backend: Backend) {
    let body = json!({"policy": {"transferLimit": {"count": 1, "periodSecs": 3600}}});
    let Licensed { app, tenant, key, id, .. } = Licensed::new(backend, body).await;
    let deactivate = |machine: &str| json!({"licenseKey": key, "machineId": machine});
    app.activate(&key, "first").await;
    assert_eq!(app.post("/api/v1/licenses/deactivate", None, deactivate("first")).await.status, StatusCode::OK);
    app.activate(&key, "second").await;
    let refused = app.post("/api/v1/licenses/deactivate", None, deactivate("second")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
    assert_eq!(refused.body["code"], "TRANSFER_LIMIT");
    assert_eq!(app.validate(&key, "second").await.body["isValid"], true, "still bound");

    let devices = app.get(&format!("/api/v1/licenses/{id}/devices"), Some(&tenant.admin_key)).await;
    let second = devices.body["devices"][0]["deviceId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/licenses/{id}/devices/{second}");
    let by_admin = app.request(Method::DELETE, &path, Some(&tenant.admin_key), None).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.body);
    assert_eq!(app.count_events(&id, "LicenseDeactivated").await, 2);
}

async fn overage_admits_more_devices_than_seats(backend: Backend) {
    let Licensed { app, key, .. } =
        Licensed::new(backend, json!({"maxActivations": 2, "policy": {"overage": "1.5"}})).await;
    for machine in ["a", "b", "c"] {
        assert_eq!(app.activate(&key, machine).await.status, StatusCode::OK, "{machine}");
    }
    let refused = app.activate(&key, "d").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["code"], "TOO_MANY_MACHINES");
}

/// Every process sweeps dead devices; each death is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_cull_each_dead_device_once() {
    let (app, _, user) = sweeping(Backend::Postgres).await;
    let other = app.another_server_with(|config| config.heartbeat_sweep_secs = 1).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let (key, id) = license(&app, &user, json!({"policy": {"heartbeatDurationSecs": 2}})).await;
        let server = if n % 2 == 0 { &app } else { &other };
        assert_eq!(server.activate(&key, &format!("machine-{n}")).await.status, StatusCode::OK);
        ids.push(id);
    }
    for id in &ids {
        assert_eq!(wait_for_events(&app, id, "DeviceCulled", 1).await, 1);
    }
    // A fixed wait: two more sweeps of each process pass, and what is
    // looked for is the absence of a second cull.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        assert_eq!(app.count_events(id, "DeviceCulled").await, 1, "{id}");
    }
}

async fn a_trial_runs_from_its_first_activation_and_a_perpetual_license_never_ends(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.expiry_sweep_secs = 1).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let trial = app
        .generate(&user.key, json!({"licenseType": 0, "validityMinutes": 10, "validityFrom": "firstActivation"}))
        .await;
    assert_eq!(trial["expiredAt"], Value::Null);
    assert_eq!(trial["expiresAfterActivationSecs"], 600);
    let key = trial["licenseKey"].as_str().unwrap();
    let activated = app.activate(key, "m").await;
    let activated_at = chrono::DateTime::parse_from_rfc3339(activated.body["activatedAt"].as_str().unwrap()).unwrap();
    let info = app.get(&format!("/api/v1/licenses/{}", trial["id"].as_str().unwrap()), Some(&user.key)).await;
    let expires = chrono::DateTime::parse_from_rfc3339(info.body["expiredAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - activated_at, chrono::Duration::minutes(10));
    assert_eq!(info.body["expiresAfterActivationSecs"], Value::Null);

    let perpetual = app.generate(&user.key, json!({"perpetual": true})).await;
    assert_eq!(perpetual["expiredAt"], Value::Null);
    let (key, id) = (perpetual["licenseKey"].as_str().unwrap(), perpetual["id"].as_str().unwrap());
    app.activate(key, "m").await;
    // A fixed wait: two expiry sweeps (one a second) pass, and what is
    // looked for is the absence of an expiry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.count_events(id, "LicenseExpired").await, 0);
    assert_eq!(app.validate(key, "m").await.body["isValid"], true);

    for (bad, field) in [
        (json!({"perpetual": true, "validityDays": 3}), "perpetual"),
        (json!({"validityDays": 3, "validityMinutes": 5}), "validityMinutes"),
        (json!({"validityMinutes": 0}), "validityMinutes"),
        (json!({"validityFrom": "tomorrow"}), "validityFrom"),
        (json!({"perpetual": true, "validityFrom": "firstActivation"}), "validityFrom"),
    ] {
        let reply = app.post("/api/v1/licenses/generate", Some(&user.key), bad.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["field"], field, "{bad}: {}", reply.body);
    }
}
