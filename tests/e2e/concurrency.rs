//! Seat limits under concurrent activation.

use futures::future::join_all;
use keyledger_tests::{on_both_backends, Backend, Licensed, TestApp};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(fifty_machines_racing_for_three_seats_get_exactly_three, concurrent_generates_all_succeed);

async fn fifty_machines_racing_for_three_seats_get_exactly_three(backend: Backend) {
    let Licensed { app, user, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 3})).await;
    let (key, id) = (key.as_str(), id.as_str());

    let machines: Vec<String> = (0..50).map(|i| format!("machine-{i:02}")).collect();
    let replies = join_all(machines.iter().map(|m| app.activate(key, m))).await;

    let mut won = 0;
    for reply in &replies {
        match reply.status {
            StatusCode::OK => won += 1,
            StatusCode::BAD_REQUEST => assert_eq!(reply.body["code"], "TOO_MANY_MACHINES", "{}", reply.body),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(won, 3);
    assert_eq!(app.count_events(id, "LicenseActivated").await, 3);
    let info = app.get(&format!("/api/v1/licenses/info/{key}"), Some(&user.key)).await;
    assert_eq!(info.body["activations"], 3);
    let valid = join_all(machines.iter().map(|m| app.validate(key, m))).await;
    assert_eq!(valid.iter().filter(|r| r.body["isValid"] == true).count(), 3);
}

async fn concurrent_generates_all_succeed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let replies = join_all((0..30).map(|_| app.post("/api/v1/licenses/generate", Some(&user.key), json!({})))).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    let mine = app.get("/api/v1/licenses/my-licenses", Some(&user.key)).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 30);
}
