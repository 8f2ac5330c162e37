//! The native API refuses body fields it does not know, naming them (and
//! the nearest known field), instead of dropping them without a word; and
//! every date-time field takes a plain date as midnight UTC.

use keyledger_tests::{on_both_backends, Backend, Licensed, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    every_native_route_with_a_body_refuses_an_unknown_field,
    a_misplaced_or_misspelt_field_points_at_the_right_one,
    date_only_dates_are_midnight_utc,
    another_documents_clients_may_send_fields_of_their_own,
);

/// The API styles that follow another document keep their own rules.
fn is_native(path: &str) -> bool {
    !(path.starts_with("/license/")
        || path.starts_with("/api/licenses/")
        || path.starts_with("/v1/")
        || path.starts_with("/keygen/")
        || path.starts_with("/api/license/")
        || path.starts_with("/api/version/")
        || path.starts_with("/api/customer")
        || path.starts_with("/api/resources/")
        || path == "/api/generate-license-key"
        || path == "/api/v1/leads/import"
        || path == "/api/v1/activate"
        || path == "/api/v1/validate")
}

/// Walks the OpenAPI document: every native operation that takes a JSON
/// body is sent one with an unknown field, by each caller. At least one
/// caller gets past authorisation to the body and is refused with
/// `unknown_field` naming it; none is served.
async fn every_native_route_with_a_body_refuses_an_unknown_field(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let document = app.get("/openapi.json", None).await.body;
    let callers =
        [None, Some(OPERATOR_TOKEN), Some(fixture.tenant.admin_key.as_str()), Some(fixture.user.key.as_str())];
    let mut checked = 0;
    for (template, item) in document["paths"].as_object().expect("paths") {
        if !is_native(template) {
            continue;
        }
        for (method, operation) in item.as_object().expect("a path item") {
            if operation.get("requestBody").is_none() {
                continue;
            }
            let path = template
                .replace("{license_id}", &fixture.id)
                .replace("{license_key}", &fixture.key)
                .replace("{key_id}", &fixture.user.id)
                .replace("{tenant_id}", &fixture.tenant.id)
                .replace("{product_id}", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
                .replace("{customer_id}", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
                .replace("{id}", "7c9e6679-7425-40de-944b-e07fc1f90ae7");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut refused_by_name = false;
            for caller in callers {
                let body = json!({ "notAFieldAtAll": 1 });
                let reply = app.request(method.clone(), &path, caller, Some(body)).await;
                let context = format!("{method} {template} as {caller:?}: {} {}", reply.status, reply.body);
                assert!(reply.status.is_client_error(), "an unknown field was served: {context}");
                // The client endpoints answer in their signed shape, the
                // platform's code in `reason`.
                let code = reply.body["reason"].as_str().or(reply.body["code"].as_str());
                if code == Some("unknown_field") {
                    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{context}");
                    assert_eq!(reply.body["field"], "notAFieldAtAll", "{context}");
                    refused_by_name = true;
                }
            }
            assert!(refused_by_name, "{method} {template}: no caller was told the field is unknown");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} native operations take a body");
}

async fn a_misplaced_or_misspelt_field_points_at_the_right_one(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let generate = |body: Value| app.post("/api/v1/licenses/generate", Some(&fixture.user.key), body);
    // A policy field at the top level: nothing is generated.
    let before = app.get("/api/v1/licenses/my-licenses", Some(&fixture.user.key)).await.body;
    let reply = generate(json!({ "heartbeatDurationSecs": 600 })).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["code"], "unknown_field");
    assert_eq!(reply.body["field"], "heartbeatDurationSecs");
    let message = reply.body["error"].as_str().unwrap();
    assert!(message.contains("policy.heartbeatDurationSecs"), "{message}");
    let after = app.get("/api/v1/licenses/my-licenses", Some(&fixture.user.key)).await.body;
    assert_eq!(before, after, "a refused generate left a license behind");
    // A typo, at the top and inside the policy.
    let reply = generate(json!({ "maxActivation": 3 })).await;
    assert_eq!(
        (reply.body["code"].as_str(), reply.body["field"].as_str()),
        (Some("unknown_field"), Some("maxActivation"))
    );
    assert!(reply.body["error"].as_str().unwrap().contains("Did you mean maxActivations?"), "{}", reply.body);
    let reply = generate(json!({ "policy": { "overages": "2" } })).await;
    assert_eq!(reply.body["field"], "policy.overages", "{}", reply.body);
    assert!(reply.body["error"].as_str().unwrap().contains("Did you mean policy.overage?"), "{}", reply.body);
    // Where it belongs, the same field is taken.
    let reply = generate(json!({ "policy": { "heartbeatDurationSecs": 600 } })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn date_only_dates_are_midnight_utc(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let admin = fixture.tenant.admin_key.as_str();
    // An edit's expiry as a date.
    let reply = app
        .request(
            Method::PATCH,
            &format!("/api/v1/licenses/{}", fixture.id),
            Some(admin),
            Some(json!({ "expiredAt": "2030-01-15" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["expiredAt"], "2030-01-15T00:00:00Z", "{}", reply.body);
    // A release dated as the V2 document dates them.
    let product = app.post("/api/v1/products", Some(admin), json!({ "name": "Editor", "code": "editor" })).await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
    let product_id = product.body["id"].as_str().unwrap();
    let release = app
        .post(
            &format!("/api/v1/products/{product_id}/releases"),
            Some(admin),
            json!({ "version": "1.2.0", "releaseDate": "2026-11-01" }),
        )
        .await;
    assert!(release.status.is_success(), "{}", release.body);
    assert_eq!(release.body["releaseDate"], "2026-11-01T00:00:00Z", "{}", release.body);
    // A date that is neither form is refused naming both.
    let reply = app
        .request(
            Method::PATCH,
            &format!("/api/v1/licenses/{}", fixture.id),
            Some(admin),
            Some(json!({ "expiredAt": "15/01/2030" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["field"], "expiredAt");
    let message = reply.body["error"].as_str().unwrap();
    assert!(message.contains("RFC 3339") && message.contains("2026-11-01"), "{message}");
    // A state-at query too.
    let reply = app.get(&format!("/api/v1/licenses/{}/state?at=2030-01-01", fixture.id), Some(admin)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// A client of another document sends what that document's samples send;
/// its API style does not refuse fields it does not read.
async fn another_documents_clients_may_send_fields_of_their_own(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let reply = app
        .post(
            "/api/licenses/validate",
            None,
            json!({ "license_key": fixture.key, "device_id": "dev-1", "client_version": "9.9", "platform": "linux" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["valid"], true, "{}", reply.body);
}
