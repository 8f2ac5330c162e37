//! kill -9 of the real `keyledger` binary while it delivers webhooks:
//! after a restart every event is delivered (at least once, with its one
//! `webhook-id`), on both backends.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::json;

use super::{keyledger, post, start_command, tenant_keys};

/// A receiver that takes its time, so the kill lands mid-delivery.
async fn slow_receiver(ids: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap| {
            let ids = ids.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                ids.lock().unwrap().push(id);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn server(data_dir: &std::path::Path, database_url: &str) -> std::process::Command {
    let mut command = keyledger(data_dir, database_url);
    command
        .env("KEYLEDGER_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        .env("KEYLEDGER_WEBHOOK_TIMEOUT_SECS", "1")
        .env("KEYLEDGER_WEBHOOK_RETRY_SCHEDULE", "0.2,0.5,1,1,1,1,1,1,1,1");
    command
}

async fn a_kill_9_mid_delivery_loses_no_webhook(backend: &str) {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = super::crash::fresh_database(backend, data_dir.path()).await;
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = slow_receiver(ids.clone()).await;
    let mut first = start_command(server(data_dir.path(), &database_url)).await;
    let client = reqwest::Client::new();
    let base = first.base.clone();
    let (admin, user) = tenant_keys(&client, &base).await;
    let hook = json!({"url": url, "events": ["license.activated"]});
    let (status, _) = post(&client, format!("{base}/api/v1/webhooks"), Some(&admin), hook).await;
    assert_eq!(status, 201);
    let (_, license) =
        post(&client, format!("{base}/api/v1/licenses/generate"), Some(&user), json!({"maxActivations": 1000})).await;
    let key = license["licenseKey"].as_str().unwrap().to_owned();

    // 150 activations, one after another (a race on one license is not
    // what this tests), each one event to deliver; the server is killed
    // once some of them have arrived.
    use futures::StreamExt;
    let activations: Vec<(u16, serde_json::Value)> = futures::stream::iter(0..150)
        .map(|n| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            async move {
                let body = json!({"licenseKey": key, "machineId": format!("m{n}")});
                post(&client, format!("{base}/api/v1/licenses/activate"), None, body).await
            }
        })
        .buffer_unordered(1)
        .collect()
        .await;
    let refused: Vec<&(u16, serde_json::Value)> = activations.iter().filter(|(status, _)| *status != 200).collect();
    assert!(refused.is_empty(), "{refused:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ids.lock().unwrap().len() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().expect("kill -9");
    first.child.wait().unwrap();
    let before = ids.lock().unwrap().iter().cloned().collect::<HashSet<_>>().len();
    assert!(before < 150, "the kill came after every delivery ({before}); the test proves nothing");

    let mut second = start_command(server(data_dir.path(), &database_url)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let unique = ids.lock().unwrap().iter().cloned().collect::<HashSet<_>>().len();
        if unique == 150 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "after the restart only {unique} of 150 events were delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{backend}: {before} delivered before the kill, all 150 after the restart");
    second.child.kill().ok();
    second.child.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_kill_9_mid_delivery_loses_no_webhook() {
    a_kill_9_mid_delivery_loses_no_webhook("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_kill_9_mid_delivery_loses_no_webhook() {
    a_kill_9_mid_delivery_loses_no_webhook("postgres").await;
}
