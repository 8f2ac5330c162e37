//! Seed 000's license lifecycle over HTTP, on both backends.

use std::time::Duration;

use chrono::{DateTime, Utc};

use keyledger_tests::{eventually_result, on_both_backends, Backend, Licensed, TestApp};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    the_seed_000_lifecycle_works_end_to_end,
    generate_applies_seed_000_defaults,
    every_activation_failure_of_seed_000_is_a_400_with_success_false,
    every_validation_failure_of_seed_000_is_is_valid_false,
    revoke_then_activation_on_a_new_machine_succeeds,
    suspend_then_validate_is_refused_until_reinstated,
    an_expired_license_is_refused_before_any_expiry_event,
    the_expiry_sweep_records_each_expiry_once,
    seats_admit_that_many_machines_and_deactivation_frees_one,
    an_admin_edit_changes_expiry_seats_and_connections,
    validate_records_at_most_one_heartbeat_per_interval,
    the_heartbeat_endpoint_records_a_heartbeat_at_most_once_per_floor,
    events_carry_who_did_what_from_where,
    raw_machine_ids_never_reach_the_log,
);

async fn the_seed_000_lifecycle_works_end_to_end(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user(&tenant, "alice").await;

    let license = app.generate(&alice.key, json!({"licenseType": 2, "validityDays": 30, "maxConnections": 10})).await;
    assert_eq!(license["status"], 0);
    assert_eq!(license["licenseType"], 2);
    assert_eq!(license["maxConnections"], 10);
    assert_eq!(license["isActivated"], false);
    assert_eq!(license["activatedAt"], json!(null));
    assert_eq!(license["machineName"], json!(null));
    let key = license["licenseKey"].as_str().unwrap();
    let id = license["id"].as_str().unwrap();
    assert!(key.len() == 19 && key.split('-').count() == 4, "{key}");

    let activation = app
        .post(
            "/api/v1/fastrLicense/activate",
            None,
            json!({"licenseKey": key, "machineId": "machine-fingerprint-123", "machineName": "prod-fastr-01"}),
        )
        .await;
    assert_eq!(activation.status, StatusCode::OK, "{}", activation.body);
    assert_eq!(activation.body["success"], true);
    assert_eq!(activation.body["error"], json!(null));
    assert_eq!(activation.body["licenseKey"], key);
    assert_eq!(activation.body["expiresAt"], license["expiredAt"]);
    assert_eq!(activation.body["licenseType"], 2);
    assert_eq!(activation.body["maxConnections"], 10);
    assert_eq!(activation.body["accountId"], tenant.id.as_str());
    assert_eq!(activation.body["userId"], alice.user_id.as_str());
    assert!(activation.body["activatedAt"].is_string());
    // Seed 000's cloud account for the activated server: its device record.
    let devices = app.get(&format!("/api/v1/licenses/{id}/devices"), Some(&alice.key)).await;
    let cloud_account = activation.body["cloudAccountId"].as_str().expect("a cloud account id");
    assert!(uuid::Uuid::parse_str(cloud_account).is_ok(), "{cloud_account}");
    assert_eq!(devices.body["devices"][0]["deviceId"], cloud_account, "{}", devices.body);

    let validation = app.validate(key, "machine-fingerprint-123").await;
    assert_eq!(validation.status, StatusCode::OK);
    assert_eq!(
        validation.body,
        json!({
            "isValid": true, "error": null, "code": "VALID", "expiresAt": license["expiredAt"], "licenseType": 2,
            "maxConnections": 10,
            // What the signed answer answers for.
            "nonce": null, "licenseKey": key, "machineId": "machine-fingerprint-123",
            "issuedAt": validation.body["issuedAt"],
        })
    );
    assert!(validation.body["issuedAt"].is_string());

    let info = app.get(&format!("/api/v1/fastrLicense/info/{key}"), Some(&alice.key)).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body["status"], 1);
    assert_eq!(info.body["isActivated"], true);
    assert_eq!(info.body["machineName"], "prod-fastr-01");
    assert_eq!(info.body["id"], id);

    let mine = app.get("/api/v1/fastrLicense/my-licenses", Some(&alice.key)).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    assert_eq!(mine.body[0]["licenseKey"], key);
    assert_eq!(mine.body[0]["status"], 1);

    let revoked = app.post(&format!("/api/v1/fastrLicense/revoke/{id}"), Some(&alice.key), json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(
        revoked.body,
        json!({
            "success": true, "error": null,
            "message": "License has been revoked and reset. It can now be activated on another machine."
        })
    );

    let info = app.get(&format!("/api/v1/licenses/info/{key}"), Some(&alice.key)).await;
    assert_eq!(info.body["status"], 0);
    assert_eq!(info.body["activatedAt"], json!(null));
    assert_eq!(info.body["machineName"], json!(null));
    assert_eq!(info.body["isActivated"], false);
}

async fn generate_applies_seed_000_defaults(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    // No body at all, as `curl -X POST` sends.
    let reply = app.request(reqwest::Method::POST, "/api/v1/licenses/generate", Some(&user.key), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let license = reply.body;
    assert_eq!(license["licenseType"], 1);
    assert_eq!(license["maxConnections"], json!(null));
    assert_eq!(license["maxActivations"], 1);
    let validity = instant(&license["expiredAt"]) - instant(&license["createdAt"]);
    assert_eq!(validity.num_days(), 365, "{license}");
}

fn instant(value: &serde_json::Value) -> DateTime<Utc> {
    value.as_str().expect("an RFC 3339 string").parse().expect("an RFC 3339 instant")
}

async fn every_activation_failure_of_seed_000_is_a_400_with_success_false(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({})).await;
    let (key, id) = (key.as_str(), id.as_str());

    let cases = [
        (json!({"machineId": "m1"}), "licenseKey"),
        (json!({"licenseKey": key, "machineId": "  "}), "machineId"),
        (json!({"licenseKey": key}), "machineId"),
        (json!({"licenseKey": "not-a-key", "machineId": "m1"}), "licenseKey"),
    ];
    for (body, field) in cases {
        let reply = app.post("/api/v1/fastrLicense/activate", None, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.body["success"], false);
        assert_eq!(reply.body["field"], field, "{}", reply.body);
    }

    // A well-formed key that does not exist.
    let unknown = app.activate("ABCD-EFGH-JKMN-2345", "m1").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["success"], false);
    assert_eq!(unknown.body["error"], "License not found");

    // Bound to a different machine.
    assert_eq!(app.activate(key, "m1").await.status, StatusCode::OK);
    let other = app.activate(key, "m2").await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.body["code"], "TOO_MANY_MACHINES");

    // Re-activating the bound machine answers as before.
    let again = app.activate(key, "m1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["success"], true);

    // Suspended.
    let suspended = app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.body);
    let refused = app.activate(key, "m1").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"], "License is suspended");

    // Expired (see the expiry test for how the clock is moved).
    let expiring = app.generate(&user.key, json!({})).await;
    expire_soon(&app, &tenant.admin_key, &expiring).await;
    let expired = app.activate(expiring["licenseKey"].as_str().unwrap(), "m1").await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert_eq!(expired.body["error"], "License has expired");
    assert_eq!(app.count_events(id, "LicenseActivated").await, 1);
}

/// Moves the license's expiry to two seconds after its creation and waits
/// until that has passed. The domain refuses an expiry at or before
/// creation, so this is about the earliest expiry there can be. (The
/// response's `createdAt` is cut to whole seconds, hence two.)
async fn expire_soon(app: &TestApp, admin_key: &str, license: &serde_json::Value) {
    let expiry = instant(&license["createdAt"]) + chrono::Duration::seconds(2);
    let id = license["id"].as_str().unwrap();
    let body = json!({"expiredAt": expiry.to_rfc3339()});
    let reply =
        app.request(reqwest::Method::PATCH, &format!("/api/v1/licenses/{id}"), Some(admin_key), Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A fixed wait: the expiry is an instant on the clock, and the callers
    // check what the server does once it has passed.
    let remaining = (expiry - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(remaining + Duration::from_millis(50)).await;
}

async fn every_validation_failure_of_seed_000_is_is_valid_false(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({})).await;
    let (key, id) = (key.as_str(), id.as_str());

    let expect_invalid = |reply: keyledger_tests::Reply, reason: &str| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["isValid"], false, "{}", reply.body);
        assert_eq!(reply.body["error"], reason, "{}", reply.body);
        // An unknown key says nothing more; a license the caller holds the
        // key of says when it expires (or expired).
        let known = reason != "License not found";
        assert_eq!(reply.body["expiresAt"].is_string(), known, "{}", reply.body);
        assert_eq!(reply.body["licenseType"].is_number(), known, "{}", reply.body);
    };
    expect_invalid(app.validate("ABCD-EFGH-JKMN-2345", "m1").await, "License not found");
    expect_invalid(app.validate(key, "m1").await, "License is not activated");
    app.activate(key, "m1").await;
    expect_invalid(app.validate(key, "m2").await, "License is not activated on this machine");
    app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({})).await;
    expect_invalid(app.validate(key, "m1").await, "License is suspended");

    let expiring = app.generate(&user.key, json!({})).await;
    let expiring_key = expiring["licenseKey"].as_str().unwrap();
    app.activate(expiring_key, "m1").await;
    expire_soon(&app, &tenant.admin_key, &expiring).await;
    expect_invalid(app.validate(expiring_key, "m1").await, "License has expired");

    // Missing or malformed input is a 400 in the validate shape.
    let reply = app.post("/api/v1/fastrLicense/validate", None, json!({"licenseKey": key})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["isValid"], false);
    assert_eq!(reply.body["field"], "machineId");
    let reply = app.post("/api/v1/fastrLicense/validate", None, json!({"licenseKey": 42, "machineId": "m1"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["field"], "licenseKey");
}

async fn revoke_then_activation_on_a_new_machine_succeeds(backend: Backend) {
    let Licensed { app, user, key, id, .. } = Licensed::new(backend, json!({})).await;
    let (key, id) = (key.as_str(), id.as_str());

    assert_eq!(app.activate(key, "old-host").await.status, StatusCode::OK);
    assert_eq!(app.activate(key, "new-host").await.status, StatusCode::BAD_REQUEST);
    let revoked = app.post(&format!("/api/v1/fastrLicense/revoke/{id}"), Some(&user.key), json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(app.activate(key, "new-host").await.status, StatusCode::OK);
    assert_eq!(app.validate(key, "new-host").await.body["isValid"], true);
    assert_eq!(app.validate(key, "old-host").await.body["isValid"], false);
    assert_eq!(app.count_events(id, "LicenseRevoked").await, 1);
    assert_eq!(app.count_events(id, "LicenseActivated").await, 2);
}

async fn suspend_then_validate_is_refused_until_reinstated(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({})).await;
    let (key, id) = (key.as_str(), id.as_str());
    app.activate(key, "m1").await;

    let suspended = app
        .post(&format!("/api/v1/licenses/suspend/{id}"), Some(&tenant.admin_key), json!({"reason": "chargeback"}))
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    assert_eq!(suspended.body["status"], 4);
    assert_eq!(app.validate(key, "m1").await.body["error"], "License is suspended");

    // The owner can't lift a suspension by revoking.
    let revoke = app.post(&format!("/api/v1/fastrLicense/revoke/{id}"), Some(&user.key), json!({})).await;
    assert_eq!(revoke.status, StatusCode::BAD_REQUEST);
    assert_eq!(revoke.body["success"], false);

    let reinstated = app.post(&format!("/api/v1/licenses/reinstate/{id}"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(reinstated.status, StatusCode::OK);
    assert_eq!(reinstated.body["status"], 1);
    assert_eq!(app.validate(key, "m1").await.body["isValid"], true);

    let again = app.post(&format!("/api/v1/licenses/reinstate/{id}"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.body["code"], "license_not_suspended");
}

async fn an_expired_license_is_refused_before_any_expiry_event(backend: Backend) {
    let Licensed { app, tenant, user, license, key, id } = Licensed::new(backend, json!({})).await;
    let (key, id) = (key.as_str(), id.as_str());
    app.activate(key, "m1").await;
    assert_eq!(app.validate(key, "m1").await.body["isValid"], true);

    expire_soon(&app, &tenant.admin_key, &license).await;
    let reply = app.validate(key, "m1").await;
    assert_eq!(reply.body["isValid"], false);
    assert_eq!(reply.body["error"], "License has expired");
    assert_eq!(app.count_events(id, "LicenseExpired").await, 0);
    let info = app.get(&format!("/api/v1/licenses/info/{key}"), Some(&user.key)).await;
    assert_eq!(info.body["status"], 2);
    assert_eq!(info.body["isActivated"], false);

    // Extending the expiry renews it.
    let renewed = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/licenses/{id}"),
            Some(&tenant.admin_key),
            Some(json!({"expiredAt": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    assert_eq!(app.validate(key, "m1").await.body["isValid"], true);
}

async fn the_expiry_sweep_records_each_expiry_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.expiry_sweep_secs = 1).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let active = app.generate(&user.key, json!({})).await;
    let suspended = app.generate(&user.key, json!({})).await;
    let (active_id, suspended_id) = (active["id"].as_str().unwrap(), suspended["id"].as_str().unwrap());
    app.activate(active["licenseKey"].as_str().unwrap(), "m1").await;
    app.post(&format!("/api/v1/licenses/suspend/{suspended_id}"), Some(&tenant.admin_key), json!({})).await;
    expire_soon(&app, &tenant.admin_key, &active).await;
    expire_soon(&app, &tenant.admin_key, &suspended).await;

    eventually_result("the sweep to record both expiries", Duration::from_secs(10), || async {
        let recorded = app.count_events(active_id, "LicenseExpired").await
            + app.count_events(suspended_id, "LicenseExpired").await;
        if recorded >= 2 {
            Ok(())
        } else {
            Err(format!("{recorded} expiries"))
        }
    })
    .await;
    // Later sweeps add nothing. A fixed wait: it lets two more sweeps (one
    // a second) pass, and what it looks for is the absence of an event.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(app.count_events(active_id, "LicenseExpired").await, 1);
    assert_eq!(app.count_events(suspended_id, "LicenseExpired").await, 1);

    let events = app.raw_events(active_id).await;
    let (event_type, _, metadata) = events.last().unwrap();
    assert_eq!(event_type, "LicenseExpired");
    let metadata: serde_json::Value = serde_json::from_str(metadata).unwrap();
    assert_eq!(metadata["actor_role"], "system");
    assert_eq!(metadata["tenant_id"], tenant.id.as_str());

    let info = app.get(&format!("/api/v1/licenses/{active_id}"), Some(&user.key)).await;
    assert_eq!(info.body["status"], 2);
    // The suspension still shows; lifting it reveals the expiry.
    let info = app.get(&format!("/api/v1/licenses/{suspended_id}"), Some(&user.key)).await;
    assert_eq!(info.body["status"], 4);
    let reinstated =
        app.post(&format!("/api/v1/licenses/reinstate/{suspended_id}"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(reinstated.body["status"], 2);
}

async fn seats_admit_that_many_machines_and_deactivation_frees_one(backend: Backend) {
    let Licensed { app, license, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    assert_eq!(license["maxActivations"], 2);
    let key = license["licenseKey"].as_str().unwrap();

    assert_eq!(app.activate(key, "m1").await.status, StatusCode::OK);
    assert_eq!(app.activate(key, "m2").await.status, StatusCode::OK);
    let third = app.activate(key, "m3").await;
    assert_eq!(third.status, StatusCode::BAD_REQUEST);
    assert_eq!(third.body["code"], "TOO_MANY_MACHINES");

    let body = json!({"licenseKey": key, "machineId": "m1"});
    let deactivated = app.post("/api/v1/licenses/deactivate", None, body.clone()).await;
    assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.body);
    assert_eq!(deactivated.body["success"], true);
    assert_eq!(app.validate(key, "m1").await.body["isValid"], false);
    assert_eq!(app.activate(key, "m3").await.status, StatusCode::OK);

    let twice = app.post("/api/v1/licenses/deactivate", None, body).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert_eq!(twice.body["code"], "OTHER_MACHINE");
}

async fn an_admin_edit_changes_expiry_seats_and_connections(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } =
        Licensed::new(backend, json!({"maxConnections": 5, "maxActivations": 2})).await;
    let (key, id) = (key.as_str(), id.as_str());
    let path = format!("/api/v1/licenses/{id}");
    let patch = |body| app.request(reqwest::Method::PATCH, &path, Some(&tenant.admin_key), Some(body));

    let edited = patch(json!({"expiredAt": "2030-01-01T00:00:00Z", "maxActivations": 3})).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["expiredAt"], "2030-01-01T00:00:00Z");
    assert_eq!(edited.body["maxActivations"], 3);
    assert_eq!(edited.body["maxConnections"], 5);
    let cleared = patch(json!({"maxConnections": null})).await;
    assert_eq!(cleared.body["maxConnections"], json!(null));

    app.activate(key, "m1").await;
    app.activate(key, "m2").await;
    let too_few = patch(json!({"maxActivations": 1})).await;
    assert_eq!(too_few.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_few.body["field"], "maxActivations");
    for bad_date in [json!("tomorrow"), json!("+10000-01-01T00:00:00Z"), json!(12)] {
        let reply = patch(json!({"expiredAt": bad_date})).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad_date}");
        assert_eq!(reply.body["field"], "expiredAt");
    }
    let owner = app.request(reqwest::Method::PATCH, &path, Some(&user.key), Some(json!({"maxActivations": 9}))).await;
    assert_eq!(owner.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count_events(id, "LicenseEdited").await, 2);
}

async fn validate_records_at_most_one_heartbeat_per_interval(backend: Backend) {
    let Licensed { app, license, key, .. } = Licensed::new(backend, json!({})).await;
    let key = key.as_str();
    app.activate(key, "m1").await;
    for _ in 0..5 {
        assert_eq!(app.validate(key, "m1").await.body["isValid"], true);
    }
    // The default interval is 15 minutes: five validations, no heartbeat yet.
    assert_eq!(app.count_events(license["id"].as_str().unwrap(), "HeartbeatRecorded").await, 0);

    let eager = TestApp::spawn_with(backend, |config| config.heartbeat_interval_secs = 1).await;
    let tenant = eager.tenant("Acme").await;
    let user = eager.user(&tenant, "u").await;
    let license = eager.generate(&user.key, json!({})).await;
    let key = license["licenseKey"].as_str().unwrap();
    eager.activate(key, "m1").await;
    // A fixed wait: the heartbeat interval (1 s) since the activation must
    // pass for a validation to record a heartbeat.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..5 {
        assert_eq!(eager.validate(key, "m1").await.body["isValid"], true);
    }
    assert_eq!(eager.count_events(license["id"].as_str().unwrap(), "HeartbeatRecorded").await, 1);
}

async fn the_heartbeat_endpoint_records_a_heartbeat_at_most_once_per_floor(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.heartbeat_floor_secs = 1).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({})).await;
    let (key, id) = (license["licenseKey"].as_str().unwrap(), license["id"].as_str().unwrap());
    let beat = |machine: &'static str| {
        app.post("/api/v1/licenses/heartbeat", None, json!({"licenseKey": key, "machineId": machine}))
    };

    // An unbound machine is told no, as validate would, and nothing is written.
    let refused = beat("m1").await;
    assert_eq!((refused.status, &refused.body["isValid"]), (StatusCode::OK, &json!(false)));
    app.activate(key, "m1").await;
    // Fixed waits: the heartbeat floor (1 s) must pass before a beat is
    // recorded, here and again below.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..3 {
        let answer = beat("m1").await;
        assert_eq!(answer.body["isValid"], true, "{}", answer.body);
    }
    assert_eq!(app.count_events(id, "HeartbeatRecorded").await, 1, "three beats within the floor record one");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(beat("m1").await.body["isValid"], true);
    assert_eq!(app.count_events(id, "HeartbeatRecorded").await, 2);

    let malformed = app.post("/api/v1/licenses/heartbeat", None, json!({"licenseKey": key})).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["field"], "machineId", "{}", malformed.body);
}

async fn events_carry_who_did_what_from_where(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let reply = app
        .client
        .post(format!("{}/api/v1/licenses/generate", app.base))
        .bearer_auth(&user.key)
        .header("x-request-id", "req-42")
        .header("user-agent", "license-daemon/1.2")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["x-request-id"], "req-42");
    let license: serde_json::Value = reply.json().await.unwrap();
    let events = app.raw_events(license["id"].as_str().unwrap()).await;
    assert_eq!(events.len(), 1);
    let metadata: serde_json::Value = serde_json::from_str(&events[0].2).unwrap();
    assert_eq!(metadata["actor_key_id"], user.id.as_str());
    assert_eq!(metadata["actor_role"], "user");
    assert_eq!(metadata["tenant_id"], tenant.id.as_str());
    assert_eq!(metadata["request_id"], "req-42");
    assert_eq!(metadata["client_ip"], "127.0.0.1");
    assert_eq!(metadata["user_agent"], "license-daemon/1.2");
    assert!(metadata["occurred_at"].is_string());

    // The anonymous client endpoints are recorded as the client, with no key.
    app.activate(license["licenseKey"].as_str().unwrap(), "m1").await;
    let events = app.raw_events(license["id"].as_str().unwrap()).await;
    let metadata: serde_json::Value = serde_json::from_str(&events[1].2).unwrap();
    assert_eq!(events[1].0, "LicenseActivated");
    assert_eq!(metadata["actor_role"], "client");
    assert_eq!(metadata.get("actor_key_id"), None);
    assert_eq!(metadata["tenant_id"], tenant.id.as_str());
}

async fn raw_machine_ids_never_reach_the_log(backend: Backend) {
    let Licensed { app, license, key, .. } = Licensed::new(backend, json!({})).await;
    let key = key.as_str();
    let fingerprint = "serial-XK42-very-identifying";
    assert_eq!(app.activate(key, fingerprint).await.status, StatusCode::OK);
    let events = app.raw_events(license["id"].as_str().unwrap()).await;
    assert_eq!(events.len(), 2);
    for (_, payload, metadata) in events {
        assert!(!payload.contains(fingerprint) && !metadata.contains(fingerprint), "{payload}");
    }
    const VIEW: &str = "SELECT state FROM license_view WHERE license_id = $1";
    let state: String = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar(VIEW)
        .bind(license["id"].as_str().unwrap())
        .fetch_one(pool)
        .await)
    .unwrap();
    assert!(!state.contains(fingerprint), "{state}");
}
