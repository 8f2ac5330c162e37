//! Anonymous and client-keyed callers can't tell another tenant's real key
//! from a guess: not by the answer (the same body), and not by its cost,
//! since both take the same lookup path (a question to the store).
//! Counted here by the lookups metric rather than timed: the cost is the
//! path, and a timing assertion would measure the machine.

use keyledger_tests::{on_both_backends, run_python, Backend, Licensed};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(another_tenants_key_costs_the_lookup_an_unknown_key_costs);

/// The `client_key_lookups` counter's series for `source`.
async fn lookups(fixture: &Licensed, source: &str) -> f64 {
    let (ok, printed) = run_python("parse_metrics.py", &[&format!("{}/metrics", fixture.app.base)], &[]).await;
    assert!(ok, "{printed}");
    printed
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|sample| sample[0] == "keyledger_client_key_lookups_total" && sample[1]["source"] == source)
        .map_or(0.0, |sample| sample[2].as_f64().unwrap())
}

async fn another_tenants_key_costs_the_lookup_an_unknown_key_costs(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let other = app.tenant("Other").await;
    let reply = app.post("/api/v1/api-keys", Some(&other.admin_key), json!({ "role": "client" })).await;
    let other_client_key = reply.body["key"].as_str().unwrap().to_owned();
    let validate = |key: &str| {
        let body = json!({ "licenseKey": key, "machineId": "m-1" });
        app.post("/api/v1/licenses/validate", Some(&other_client_key), body)
    };
    // Known to this process's memory, as every license is after start-up.
    let own = app.validate(&fixture.key, "m-1").await;
    assert_eq!(own.status, StatusCode::OK);

    let before = lookups(&fixture, "store").await;
    let mut answers = Vec::new();
    for _ in 0..10 {
        let reply = validate(&fixture.key).await;
        answers.push((reply.body["code"].clone(), reply.body["reason"].clone(), reply.body["error"].clone()));
    }
    let after_real = lookups(&fixture, "store").await;
    for _ in 0..10 {
        let reply = validate("ABCD-EFGH-JKMN-PQRS").await;
        answers.push((reply.body["code"].clone(), reply.body["reason"].clone(), reply.body["error"].clone()));
    }
    let after_unknown = lookups(&fixture, "store").await;
    assert_eq!(after_real - before, 10.0, "another tenant's real key asks the store once a call");
    assert_eq!(after_unknown - after_real, 10.0, "an unknown key asks the store once a call");
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "one answer for both: {answers:?}");
    assert_eq!(answers[0].1, "license_not_found");
}
