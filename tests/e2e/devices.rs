//! Devices as records of their license: what they reported, their stable
//! ids, past devices, blocking, registering and deactivating by an
//! administrator, and read models of an earlier release re-folded at start.

use keyledger_tests::{on_both_backends, Backend, Licensed, Reply, TestApp, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    a_device_keeps_what_it_reported_and_its_id_across_reactivation,
    a_blocked_device_is_refused_until_unblocked,
    administrators_register_and_deactivate_devices,
    another_tenants_devices_are_not_found_and_bad_ids_name_the_field,
    read_models_of_an_earlier_release_are_refolded_at_start,
    licenses_and_devices_get_per_tenant_numbers,
);

fn devices_path(id: &str) -> String {
    format!("/api/v1/licenses/{id}/devices")
}

async fn devices(app: &TestApp, id: &str, key: &str) -> Vec<Value> {
    let reply = app.get(&devices_path(id), Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["devices"].as_array().expect("devices").clone()
}

async fn activate_as_app(app: &TestApp, key: &str, machine: &str, version: &str) -> Reply {
    let body = json!({ "licenseKey": key, "machineId": machine, "machineName": "build-07", "appVersion": version });
    let response = app
        .client
        .post(format!("{}/api/v1/licenses/activate", app.base))
        .header("user-agent", "acme-app/2.4 (linux)")
        .json(&body)
        .send()
        .await
        .expect("request reaches the server");
    let status = response.status();
    Reply { status, body: response.json().await.unwrap_or(Value::Null) }
}

async fn a_device_keeps_what_it_reported_and_its_id_across_reactivation(backend: Backend) {
    let Licensed { app, user, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    let activated = activate_as_app(&app, &key, "fingerprint-1", "2.4.0").await;
    assert_eq!(activated.status, StatusCode::OK, "{}", activated.body);

    let listed = devices(&app, &id, &user.key).await;
    assert_eq!(listed.len(), 1);
    let device = &listed[0];
    let device_id = device["deviceId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&device_id).is_ok(), "{device_id}");
    assert_eq!(device["machineName"], "build-07");
    assert_eq!(device["appVersion"], "2.4.0");
    assert_eq!(device["userAgent"], "acme-app/2.4 (linux)");
    assert_eq!(device["ip"], "127.0.0.1");
    assert_eq!(device["active"], true);
    assert_eq!(device["blocked"], false);
    assert_eq!(device["lastSeenAt"], device["activatedAt"]);
    assert!(!listed[0].to_string().contains("fingerprint"));
    // The license itself shows the devices holding its seats.
    let license = app.get(&format!("/api/v1/licenses/{id}"), Some(&user.key)).await;
    assert_eq!(license.body["devices"][0]["deviceId"], device_id.as_str());

    let body = json!({ "licenseKey": key, "machineId": "fingerprint-1" });
    assert_eq!(app.post("/api/v1/licenses/deactivate", None, body).await.status, StatusCode::OK);
    let listed = devices(&app, &id, &user.key).await;
    assert_eq!(listed.len(), 1, "a released device stays listed: {listed:?}");
    assert_eq!(listed[0]["active"], false);
    assert!(listed[0]["releasedAt"].is_string());

    assert_eq!(activate_as_app(&app, &key, "fingerprint-1", "2.5.0").await.status, StatusCode::OK);
    let listed = devices(&app, &id, &user.key).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["deviceId"], device_id.as_str(), "the same machine keeps its id");
    assert_eq!(listed[0]["appVersion"], "2.5.0");
    assert_eq!(listed[0]["active"], true);

    let too_long = activate_as_app(&app, &key, "fingerprint-2", &"9".repeat(65)).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_long.body["field"], "appVersion");
}

async fn a_blocked_device_is_refused_until_unblocked(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 2})).await;
    assert_eq!(app.activate(&key, "laptop").await.status, StatusCode::OK);
    assert_eq!(app.activate(&key, "desktop").await.status, StatusCode::OK);
    let listed = devices(&app, &id, &user.key).await;
    let laptop = listed[0]["deviceId"].as_str().unwrap().to_owned();
    let block = format!("{}/{laptop}/block", devices_path(&id));

    let by_owner = app.post(&block, Some(&user.key), json!({})).await;
    assert_eq!(by_owner.status, StatusCode::FORBIDDEN, "only administrators block");
    let blocked = app.post(&block, Some(&tenant.admin_key), json!({})).await;
    assert_eq!(blocked.status, StatusCode::OK, "{}", blocked.body);
    assert_eq!(blocked.body["blocked"], true);
    assert_eq!(blocked.body["active"], false, "blocking released the seat");
    assert_eq!(app.post(&block, Some(&tenant.admin_key), json!({})).await.status, StatusCode::OK);
    assert_eq!(app.count_events(&id, "DeviceBlocked").await, 1, "blocking twice records once");

    let validated = app.validate(&key, "laptop").await;
    assert_eq!(validated.status, StatusCode::OK);
    assert_eq!(validated.body["isValid"], false);
    assert_eq!(validated.body["code"], "DEVICE_BLOCKED");
    let heartbeat =
        app.post("/api/v1/licenses/heartbeat", None, json!({"licenseKey": key, "machineId": "laptop"})).await;
    assert_eq!(heartbeat.body["code"], "DEVICE_BLOCKED");
    let activated = app.activate(&key, "laptop").await;
    assert_eq!(activated.status, StatusCode::FORBIDDEN);
    assert_eq!(activated.body["code"], "DEVICE_BLOCKED");
    assert_eq!(app.validate(&key, "desktop").await.body["isValid"], true, "other devices are untouched");

    let unblocked =
        app.post(&format!("{}/{laptop}/unblock", devices_path(&id)), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(unblocked.status, StatusCode::OK, "{}", unblocked.body);
    assert_eq!(unblocked.body["blocked"], false);
    assert_eq!(app.activate(&key, "laptop").await.status, StatusCode::OK);
    assert_eq!(app.validate(&key, "laptop").await.body["isValid"], true);
}

async fn administrators_register_and_deactivate_devices(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 3})).await;
    let register = |machine: &str| json!({ "machineId": machine, "machineName": "kiosk", "appVersion": "1.0" });
    let by_owner = app.post(&devices_path(&id), Some(&user.key), register("kiosk-1")).await;
    assert_eq!(by_owner.status, StatusCode::FORBIDDEN);
    let registered = app.post(&devices_path(&id), Some(&tenant.admin_key), register("kiosk-1")).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.body);
    assert_eq!(registered.body["active"], true);
    assert_eq!(registered.body["ip"], Value::Null, "the administrator's address is not the device's");
    assert_eq!(app.validate(&key, "kiosk-1").await.body["isValid"], true, "the client finds its seat taken");
    let again = app.post(&devices_path(&id), Some(&tenant.admin_key), register("kiosk-1")).await;
    assert_eq!(again.body["deviceId"], registered.body["deviceId"]);
    assert_eq!(app.count_events(&id, "LicenseActivated").await, 1);

    let one = format!("{}/{}", devices_path(&id), registered.body["deviceId"].as_str().unwrap());
    let deactivated = app.request(Method::DELETE, &one, Some(&tenant.admin_key), None).await;
    assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.body);
    assert_eq!(deactivated.body["active"], false);
    assert_eq!(app.validate(&key, "kiosk-1").await.body["isValid"], false);

    for machine in ["kiosk-2", "kiosk-3"] {
        let reply = app.post(&devices_path(&id), Some(&tenant.admin_key), register(machine)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let all = app.request(Method::DELETE, &devices_path(&id), Some(&tenant.admin_key), None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["deactivated"], 2);
    assert_eq!(app.count_events(&id, "LicenseDeactivated").await, 3);
    let license = app.get(&format!("/api/v1/licenses/{id}"), Some(&user.key)).await;
    assert_eq!(license.body["activations"], 0);
    assert_eq!(license.body["status"], 0, "back to Generated");
    assert_eq!(devices(&app, &id, &user.key).await.len(), 3, "all three listed as past devices");
    let none_left = app.request(Method::DELETE, &devices_path(&id), Some(&tenant.admin_key), None).await;
    assert_eq!(none_left.body["deactivated"], 0);
}

async fn another_tenants_devices_are_not_found_and_bad_ids_name_the_field(backend: Backend) {
    let Licensed { app, tenant, key, id, .. } = Licensed::new(backend, json!({})).await;
    app.activate(&key, "m-1").await;
    let listed = devices(&app, &id, &tenant.admin_key).await;
    let device = format!("{}/{}", devices_path(&id), listed[0]["deviceId"].as_str().unwrap());
    let globex = app.tenant("Globex").await;

    assert_eq!(app.get(&devices_path(&id), Some(&globex.admin_key)).await.status, StatusCode::NOT_FOUND);
    for path in [format!("{device}/block"), format!("{device}/unblock")] {
        assert_eq!(app.post(&path, Some(&globex.admin_key), json!({})).await.status, StatusCode::NOT_FOUND);
    }
    let deleted = app.request(Method::DELETE, &device, Some(&globex.admin_key), None).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    let registered = app.post(&devices_path(&id), Some(&globex.admin_key), json!({"machineId": "m-2"})).await;
    assert_eq!(registered.status, StatusCode::NOT_FOUND);
    assert_eq!(app.validate(&key, "m-1").await.body["isValid"], true, "nothing changed");

    let bad = app.post(&format!("{}/not-a-uuid/block", devices_path(&id)), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "deviceId");
    let unknown = format!("{}/{}/block", devices_path(&id), uuid::Uuid::new_v4());
    let unknown = app.post(&unknown, Some(&tenant.admin_key), json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], "device_not_found");
    let no_machine = app.post(&devices_path(&id), Some(&tenant.admin_key), json!({"machineName": "x"})).await;
    assert_eq!(no_machine.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_machine.body["field"], "machineId");
    let operator = app.get(&devices_path(&id), Some(OPERATOR_TOKEN)).await;
    assert_eq!(operator.status, StatusCode::OK);
}

/// A release before devices were records kept no past devices and wrote
/// its rows with `state_format` 1: a process of this release re-folds
/// such rows from the log before it serves.
async fn read_models_of_an_earlier_release_are_refolded_at_start(backend: Backend) {
    let Licensed { app, user, key, id, .. } = Licensed::new(backend, json!({})).await;
    app.activate(&key, "old-laptop").await;
    app.post("/api/v1/licenses/deactivate", None, json!({"licenseKey": key, "machineId": "old-laptop"})).await;
    assert_eq!(devices(&app, &id, &user.key).await.len(), 1);

    // What the earlier release left: the same row without past devices.
    let state = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar::<_, String>(
        "SELECT state FROM license_view WHERE license_id = $1").bind(&id).fetch_one(pool).await)
    .unwrap();
    let mut old: Value = serde_json::from_str(&state).unwrap();
    old.as_object_mut().unwrap().remove("past_devices");
    keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query(
        "UPDATE license_view SET state = $1, state_format = 1 WHERE license_id = $2")
        .bind(old.to_string()).bind(&id).execute(pool).await.map(drop))
    .unwrap();

    let upgraded = app.another_server().await;
    assert_eq!(devices(&upgraded, &id, &user.key).await.len(), 1, "the past device is back");
    let format = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar::<_, Option<i64>>(
        "SELECT CAST(state_format AS BIGINT) FROM license_view WHERE license_id = $1").bind(&id).fetch_one(pool).await)
    .unwrap();
    assert_eq!(format, Some(keyledger_eventlog::SNAPSHOT_FORMAT));
}

async fn licenses_and_devices_get_per_tenant_numbers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (acme, globex) = (app.tenant("Acme").await, app.tenant("Globex").await);
    let (user, other) = (app.user(&acme, "u").await, app.user(&globex, "u").await);
    let mut numbers = Vec::new();
    for _ in 0..3 {
        numbers.push(app.generate(&user.key, json!({"maxActivations": 3})).await);
    }
    let license_numbers: Vec<i64> = numbers.iter().map(|l| l["number"].as_i64().unwrap()).collect();
    assert_eq!(license_numbers, [1, 2, 3], "one process hands out its block in order");
    assert_eq!(app.generate(&other.key, json!({})).await["number"], 1, "each tenant counts on its own");

    let (key, id) = (numbers[0]["licenseKey"].as_str().unwrap(), numbers[0]["id"].as_str().unwrap());
    app.activate(key, "a").await;
    app.activate(key, "b").await;
    let listed = devices(&app, id, &user.key).await;
    let (a, b) = (listed[0]["number"].as_i64().unwrap(), listed[1]["number"].as_i64().unwrap());
    assert_ne!(a, b);
    app.post("/api/v1/licenses/deactivate", None, json!({"licenseKey": key, "machineId": "a"})).await;
    app.activate(key, "a").await;
    let again = devices(&app, id, &user.key).await;
    let a_again = again.iter().find(|d| d["machineName"] == "test-machine" && d["number"] == a);
    assert!(a_again.is_some(), "the device keeps its number: {again:?}");
    // Another license's device gets a number of its own.
    let key2 = numbers[1]["licenseKey"].as_str().unwrap();
    app.activate(key2, "a").await;
    let on_second = devices(&app, numbers[1]["id"].as_str().unwrap(), &user.key).await;
    let c = on_second[0]["number"].as_i64().unwrap();
    assert!(c != a && c != b);
}
