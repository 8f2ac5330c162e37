//! Client addresses behind a trusted proxy: only the forwarding header the
//! operator names counts, and an entry in it that is not an address is a
//! 400 for that request, never charged to the proxy's own address.

use keyledger_api::Config;
use keyledger_tests::{on_both_backends, Backend, Licensed};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    garbage_from_a_trusted_proxy_is_refused_and_never_blocks_the_proxy,
    only_the_configured_forwarding_header_names_the_client,
);

async fn garbage_from_a_trusted_proxy_is_refused_and_never_blocks_the_proxy(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = fixture
        .app
        .another_server_with(|config: &mut Config| {
            config.rate_limits = "on".to_owned();
            config.trusted_proxies = "127.0.0.1".to_owned();
            config.rate_limit_block_after = 5;
        })
        .await;
    let validate = |forwarded: &'static str, key: &str| {
        app.client
            .post(format!("{}/api/v1/licenses/validate", app.base))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "licenseKey": key, "machineId": "m-1" }))
            .send()
    };
    // Far more unknown-key guesses than a block needs, each with an
    // unreadable address: each is refused on its own.
    for _ in 0..35 {
        let response = validate("garbage", "ABCD-EFGH-JKMN-PQRS").await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["reason"], "unreadable_forwarded_header", "{body}");
    }
    // Clients behind the proxy are served, and its health check answers.
    let response = validate("198.51.100.20", &fixture.key).await.unwrap();
    // A machine without a seat: validate's normal refusal, not a limit.
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (body["isValid"].as_bool(), body["reason"].as_str()),
        (Some(false), Some("license_not_activated")),
        "{body}"
    );
    let health = app.client.get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

async fn only_the_configured_forwarding_header_names_the_client(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 3 })).await;
    let forwarded_only = fixture
        .app
        .another_server_with(|config: &mut Config| {
            config.trusted_proxies = "127.0.0.1".to_owned();
            config.forwarded_header = "forwarded".to_owned();
        })
        .await;
    let activate = |machine: &str, headers: &[(&'static str, &'static str)]| {
        let mut request = forwarded_only
            .client
            .post(format!("{}/api/v1/licenses/activate", forwarded_only.base))
            .json(&json!({ "licenseKey": fixture.key, "machineId": machine }));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    // The proxy writes only `Forwarded`; the client's own X-Forwarded-For
    // passes through it and must name nobody.
    let response =
        activate("m-1", &[("x-forwarded-for", "192.0.2.66"), ("forwarded", "for=203.0.113.7")]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = activate("m-2", &[("x-forwarded-for", "192.0.2.66")]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let history =
        fixture.app.get(&format!("/api/v1/licenses/{}/events", fixture.id), Some(&fixture.tenant.admin_key)).await.body;
    let addresses: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "LicenseActivated")
        .map(|event| event["metadata"]["client_ip"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(addresses, ["203.0.113.7", "127.0.0.1"], "{history}");
}
