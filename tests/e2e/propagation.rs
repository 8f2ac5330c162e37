//! What one process commits, another acts on at once where it matters for
//! longer than a call: an offline license token lasts days, so no process
//! issues one for a device whose block, or a license whose suspension, is
//! committed, however recently and wherever.

use keyledger_tests::{on_both_backends, Backend, Licensed};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(no_process_issues_a_token_after_a_committed_block_or_suspension);

async fn no_process_issues_a_token_after_a_committed_block_or_suspension(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 20 })).await;
    let (admin_side, client_side) = (&fixture.app, fixture.app.another_server().await);
    let admin = fixture.tenant.admin_key.as_str();
    let token = |machine: String| {
        let body = json!({ "licenseKey": fixture.key, "machineId": machine });
        client_side.post("/api/v1/licenses/token", None, body)
    };
    for trial in 0..10 {
        let machine = format!("machine-{trial}");
        let activated = client_side.activate(&fixture.key, &machine).await;
        assert_eq!(activated.status, StatusCode::OK, "{}", activated.body);
        // The client side has the device in memory, as a validating fleet does.
        assert_eq!(token(machine.clone()).await.status, StatusCode::OK);
        let devices = admin_side.get(&format!("/api/v1/licenses/{}/devices", fixture.id), Some(admin)).await.body;
        // The one device holding a seat: each earlier one was blocked.
        let device_id = devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["active"] == true && d["blocked"] == false)
            .map(|d| d["deviceId"].as_str().unwrap().to_owned())
            .expect("the device");
        let blocked = admin_side
            .post(&format!("/api/v1/licenses/{}/devices/{device_id}/block", fixture.id), Some(admin), json!({}))
            .await;
        assert!(blocked.status.is_success(), "{}", blocked.body);
        // At once, on the other process.
        let refused = token(machine).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "trial {trial}: a token after the block: {}", refused.body);
        assert_eq!(refused.body["reason"], "device_blocked", "{}", refused.body);
    }
    // A suspension, the same.
    let machine = "suspended-machine".to_owned();
    assert_eq!(client_side.activate(&fixture.key, &machine).await.status, StatusCode::OK);
    assert_eq!(token(machine.clone()).await.status, StatusCode::OK);
    let suspended = admin_side.post(&format!("/api/v1/licenses/suspend/{}", fixture.id), Some(admin), json!({})).await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.body);
    let refused = token(machine).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["reason"], "license_suspended", "{}", refused.body);
}
