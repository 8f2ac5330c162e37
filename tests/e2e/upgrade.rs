//! Today's binary on a data directory written by an earlier release
//! (tests/fixtures/a046dc4, made by `make_upgrade_fixture.py` with the
//! binary of commit a046dc4, the last before the catalog): the log is
//! migrated in place at start-up, every old license answers as before,
//! its history and a checkpoint signed then still verify, and the new
//! features work on the old licenses.

use std::path::{Path, PathBuf};

use keyledger_api::verify_log;
use keyledger_eventlog::{CheckpointCheck, SignedCheckpoint};
use keyledger_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("a046dc4")
}

/// A private copy of the fixture, for the server to migrate.
fn copy_of_fixture() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(fixture_dir()).expect("the fixture directory") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let fixture = std::fs::read_to_string(dir.path().join("fixture.json")).unwrap();
    (dir, serde_json::from_str(&fixture).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_release_before_the_catalog_is_migrated_in_place() {
    let (dir, fixture) = copy_of_fixture();
    let app = TestApp::spawn_in(dir).await;
    let admin = fixture["adminKey"].as_str().unwrap();
    let license = |name: &str| {
        let l = &fixture["licenses"][name];
        (l["id"].as_str().unwrap().to_owned(), l["licenseKey"].as_str().unwrap().to_owned())
    };

    // Every old license reads and answers as it did.
    let (active_id, active_key) = license("active");
    let active = app.get(&format!("/api/v1/licenses/{active_id}"), Some(admin)).await;
    assert_eq!(active.status, StatusCode::OK, "{}", active.body);
    assert_eq!((active.body["status"].as_i64(), active.body["licenseType"].as_i64()), (Some(1), Some(2)));
    assert_eq!(active.body["productId"], Value::Null, "the tenant's default product");
    assert_eq!(active.body["customerId"], Value::Null);
    assert_eq!(active.body["number"], Value::Null, "generated before numbers");
    let device = &active.body["devices"][0];
    assert!(device["deviceId"].as_str().is_some_and(|id| id.len() == 36), "{device}");
    assert_eq!(app.validate(&active_key, "old-machine-1").await.body["isValid"], true);
    assert_eq!(app.validate(&active_key, "another").await.body["isValid"], false);

    let (seats_id, seats_key) = license("seats");
    let seats = app.get(&format!("/api/v1/licenses/{seats_id}/devices"), Some(admin)).await;
    assert_eq!(seats.status, StatusCode::OK, "{}", seats.body);
    let devices = seats.body["devices"].as_array().unwrap();
    let active_devices: Vec<bool> = devices.iter().map(|d| d["active"].as_bool().unwrap()).collect();
    assert_eq!(active_devices, [true, false], "one holding a seat, one released: {devices:?}");
    assert_eq!(app.validate(&seats_key, "old-machine-b").await.body["isValid"], true);
    assert_eq!(app.validate(&seats_key, "old-machine-a").await.body["isValid"], false);

    let (suspended_id, suspended_key) = license("suspended");
    let suspended = app.get(&format!("/api/v1/licenses/{suspended_id}"), Some(admin)).await;
    assert_eq!(suspended.body["status"], 4);
    assert_eq!(app.validate(&suspended_key, "old-machine-s").await.body["code"], "SUSPENDED");
    let (revoked_id, revoked_key) = license("revoked");
    let revoked = app.get(&format!("/api/v1/licenses/{revoked_id}"), Some(admin)).await;
    assert_eq!(revoked.body["status"], 0, "revoke resets to Generated");
    assert_eq!(app.activate(&revoked_key, "new-home").await.status, StatusCode::OK);

    // The old log verifies, and so does the checkpoint signed back then.
    let kept: SignedCheckpoint = serde_json::from_value(fixture["checkpoint"].clone()).unwrap();
    let public_key = fixture["checkpointPublicKey"].as_str().unwrap();
    let (chains, outcome) = verify_log(&app.config(), None, Some((&kept, public_key))).await.unwrap();
    assert!(chains.broken.is_empty(), "{:?}", chains.broken);
    assert_eq!(outcome, Some(CheckpointCheck::Matches));

    // The new features work on old licenses.
    let customer = app.post("/api/v1/customers", Some(admin), json!({"name": "Old customer"})).await;
    assert_eq!(customer.status, StatusCode::CREATED, "{}", customer.body);
    let path = format!("/api/v1/licenses/{active_id}");
    let body = json!({"customerId": customer.body["id"], "policy": {"overage": "2"}});
    let edited = app.request(Method::PATCH, &path, Some(admin), Some(body)).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(app.activate(&active_key, "old-machine-2").await.status, StatusCode::OK, "overage 2 on one seat");
    let user = fixture["userKey"].as_str().unwrap();
    let new_license = app.generate(user, json!({})).await;
    assert!(new_license["number"].as_i64().is_some());
    let history = app.get(&format!("{path}/events"), Some(admin)).await;
    let types: Vec<&str> =
        history.body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"LicenseGenerated"));
    assert!(types.contains(&"HeartbeatRecorded"), "{types:?}");
    assert_eq!(types.last(), Some(&"LicenseActivated"));
}
