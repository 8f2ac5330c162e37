//! The client protocol: signed answers, offline license tokens checked by
//! stock libraries (Python's `cryptography` and PyJWT), signing-key
//! rotation and retirement, client keys confined to their tenant, and the
//! master key that seals the private keys.

use keyledger_api::Application;
use keyledger_tests::{
    on_both_backends, run_python, test_config, Backend, Licensed, TestApp, MASTER_KEY, OPERATOR_TOKEN,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    a_client_written_from_the_readme_verifies_every_answer_and_token,
    the_same_client_with_a_client_key,
    a_token_verifies_until_its_key_is_retired,
    a_key_retired_on_one_process_leaves_nothing_another_signed_unverifiable,
    signing_keys_are_managed_by_tenant_admins_only,
    a_client_key_sees_its_own_tenants_licenses_only,
    a_tenant_can_require_a_client_key,
    a_wrong_or_missing_master_key_stops_the_start_and_loses_nothing,
);

async fn client_check(fixture: &Licensed, client_key: Option<&str>) {
    let mut env = vec![
        ("BASE", fixture.app.base.as_str()),
        ("TENANT", fixture.tenant.id.as_str()),
        ("LICENSE_KEY", fixture.key.as_str()),
    ];
    if let Some(key) = client_key {
        env.push(("CLIENT_KEY", key));
    }
    let (ok, printed) = run_python("client_protocol.py", &[], &env).await;
    assert!(ok, "the Python client's checks failed:\n{printed}");
}

async fn a_client_written_from_the_readme_verifies_every_answer_and_token(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 2 })).await;
    client_check(&fixture, None).await;
}

async fn the_same_client_with_a_client_key(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 2 })).await;
    let client =
        fixture.app.post("/api/v1/api-keys", Some(&fixture.tenant.admin_key), json!({ "role": "client" })).await;
    assert_eq!(client.status, StatusCode::CREATED, "{}", client.body);
    client_check(&fixture, client.body["key"].as_str()).await;
}

async fn activate_token(app: &TestApp, key: &str, machine: &str) -> String {
    let reply = app.activate(key, machine).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["licenseToken"].as_str().expect("activate hands out a token").to_owned()
}

async fn verifies(fixture: &Licensed, token: &str) -> (bool, String) {
    let jwks = format!("{}/api/v1/tenants/{}/jwks.json", fixture.app.base, fixture.tenant.id);
    let issuer = format!("keyledger:{}", fixture.tenant.id);
    run_python("verify_token.py", &[&jwks, &issuer, token], &[]).await
}

async fn a_token_verifies_until_its_key_is_retired(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 5 })).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    let old_token = activate_token(app, &fixture.key, "m1").await;
    let (ok, claims) = verifies(&fixture, &old_token).await;
    assert!(ok, "{claims}");
    let claims: Value = serde_json::from_str(claims.trim()).unwrap();
    assert_eq!(claims["sub"], fixture.id.as_str());
    assert_eq!(claims["iss"], format!("keyledger:{}", fixture.tenant.id));

    let listed = app.get("/api/v1/signing-keys", Some(admin)).await;
    let old_kid = listed.body["keys"][0]["kid"].as_str().unwrap().to_owned();
    let rotated = app.post("/api/v1/signing-keys/rotate", Some(admin), json!({})).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let new_kid = rotated.body["kid"].as_str().unwrap();
    assert_ne!(new_kid, old_kid);

    // New answers are signed with the new key; the old token still verifies.
    let new_token = activate_token(app, &fixture.key, "m2").await;
    assert!(verifies(&fixture, &new_token).await.0);
    let validate = app
        .client
        .post(format!("{}/api/v1/licenses/validate", app.base))
        .json(&json!({ "licenseKey": fixture.key, "machineId": "m2" }))
        .send()
        .await
        .unwrap();
    let signature = validate.headers()["keyledger-signature"].to_str().unwrap().to_owned();
    assert!(signature.contains(&format!("keyid=\"{new_kid}\"")), "{signature}");
    assert!(verifies(&fixture, &old_token).await.0, "a token signed before the rotation verifies");

    // The current key can't be retired; the old one can: it signs nothing
    // more and stays published for the token lifetime, so its tokens still
    // verify; retired immediately, they no longer do.
    let current = app.request(Method::DELETE, &format!("/api/v1/signing-keys/{new_kid}"), Some(admin), None).await;
    assert_eq!((current.status, current.body["code"].as_str()), (StatusCode::CONFLICT, Some("current_signing_key")));
    let retired = app.request(Method::DELETE, &format!("/api/v1/signing-keys/{old_kid}"), Some(admin), None).await;
    assert_eq!(retired.status, StatusCode::NO_CONTENT);
    assert!(verifies(&fixture, &old_token).await.0, "within its grace a retired key's token verifies");
    let listed = app.get("/api/v1/signing-keys", Some(admin)).await;
    let old = listed.body["keys"].as_array().unwrap().iter().find(|k| k["kid"] == old_kid.as_str()).unwrap().clone();
    assert!(old["publishedUntil"].as_str() > old["retiredAt"].as_str(), "{old}");
    let path = format!("/api/v1/signing-keys/{old_kid}?immediately=maybe");
    let reply = app.request(Method::DELETE, &path, Some(admin), None).await;
    assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("immediately")));
    let path = format!("/api/v1/signing-keys/{old_kid}?immediately=true");
    assert_eq!(app.request(Method::DELETE, &path, Some(admin), None).await.status, StatusCode::NO_CONTENT);
    let (ok, why) = verifies(&fixture, &old_token).await;
    assert!(!ok, "a token of a key retired immediately verified: {why}");
    let again = app.request(Method::DELETE, &path, Some(admin), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    assert!(verifies(&fixture, &new_token).await.0);
    let jwks = app.get(&format!("/api/v1/tenants/{}/jwks.json", fixture.tenant.id), None).await;
    assert!(jwks.body["keys"].as_array().unwrap().iter().all(|k| k["kid"] != old_kid.as_str()));
    let listed = app.get("/api/v1/signing-keys", Some(admin)).await;
    let old = listed.body["keys"].as_array().unwrap().iter().find(|k| k["kid"] == old_kid.as_str()).unwrap().clone();
    assert!(old["retiredAt"].is_string() && old["current"] == false, "{old}");

    // Another process on the database follows within about a second.
    let other = app.another_server().await;
    let answer = other
        .client
        .post(format!("{}/api/v1/licenses/validate", other.base))
        .json(&json!({ "licenseKey": fixture.key, "machineId": "m2" }))
        .send()
        .await
        .unwrap();
    assert!(answer.headers()["keyledger-signature"].to_str().unwrap().contains(new_kid));
}

async fn signing_keys_are_managed_by_tenant_admins_only(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    let other = app.tenant("Other").await;
    for caller in [fixture.user.key.as_str(), OPERATOR_TOKEN] {
        assert_eq!(app.get("/api/v1/signing-keys", Some(caller)).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            app.post("/api/v1/signing-keys/rotate", Some(caller), json!({})).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(app.get("/api/v1/signing-keys", None).await.status, StatusCode::UNAUTHORIZED);
    let theirs = app.get("/api/v1/signing-keys", Some(&other.admin_key)).await;
    let their_kid = theirs.body["keys"][0]["kid"].as_str().unwrap().to_owned();
    app.post("/api/v1/signing-keys/rotate", Some(&other.admin_key), json!({})).await;
    let reply = app.request(Method::DELETE, &format!("/api/v1/signing-keys/{their_kid}"), Some(admin), None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "another tenant's key does not exist here");
    let reply = app.request(Method::DELETE, "/api/v1/signing-keys/not-a-kid", Some(admin), None).await;
    assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("kid")));
    let listed = app.get("/api/v1/signing-keys", Some(admin)).await;
    let key = &listed.body["keys"][0];
    assert_eq!((key["current"].as_bool(), key["algorithm"].as_str()), (Some(true), Some("Ed25519")));
    assert!(key.get("privateKey").is_none() && !listed.body.to_string().contains("private"));
    // The JWKS is public, for known tenants.
    let jwks = app.get(&format!("/api/v1/tenants/{}/jwks.json", fixture.tenant.id), None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwk = &jwks.body["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str(), jwk["use"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    let unknown = app.get("/api/v1/tenants/00000000-0000-0000-0000-000000000000/jwks.json", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn client_key(app: &TestApp, admin: &str) -> String {
    let reply =
        app.post("/api/v1/api-keys", Some(admin), json!({ "role": "client", "name": "shipped in the app" })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["key"].as_str().unwrap().to_owned()
}

async fn client_call(
    app: &TestApp,
    endpoint: &str,
    key: Option<&str>,
    license_key: &str,
    machine: &str,
) -> (StatusCode, Value, String) {
    let mut request = app
        .client
        .post(format!("{}/api/v1/licenses/{endpoint}", app.base))
        .json(&json!({ "licenseKey": license_key, "machineId": machine }));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let signature =
        response.headers().get("keyledger-signature").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, response.json().await.unwrap(), signature)
}

/// The body an answer would have, less what names the request.
fn without_echo(mut body: Value) -> Value {
    for field in ["nonce", "licenseKey", "machineId", "issuedAt"] {
        body.as_object_mut().unwrap().remove(field);
    }
    body
}

async fn a_client_key_sees_its_own_tenants_licenses_only(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let ours = client_key(app, &fixture.tenant.admin_key).await;
    let other = app.tenant("Other").await;
    let theirs = client_key(app, &other.admin_key).await;

    let (status, body, _) = client_call(app, "activate", Some(&ours), &fixture.key, "m1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for endpoint in ["activate", "validate", "heartbeat", "deactivate", "token"] {
        // Another tenant's client key: exactly what an unknown key gets.
        let (status, body, signature) = client_call(app, endpoint, Some(&theirs), &fixture.key, "m1").await;
        let (unknown_status, unknown, unknown_signature) =
            client_call(app, endpoint, Some(&theirs), "ABCD-EFGH-JKMN-PQRS", "m1").await;
        assert_eq!((status, without_echo(body.clone())), (unknown_status, without_echo(unknown)), "{endpoint}");
        let kid = |s: &str| s.split('"').nth(1).unwrap_or_default().to_owned();
        assert_eq!(kid(&signature), kid(&unknown_signature), "{endpoint}: signed by the same key");
    }
    assert_eq!(app.count_events(&fixture.id, "LicenseDeactivated").await, 0);
    // A client key can't manage anything.
    for (method, path) in [
        (Method::GET, "/api/v1/licenses/my-licenses"),
        (Method::POST, "/api/v1/licenses/generate"),
        (Method::GET, "/api/v1/api-keys"),
    ] {
        let reply = app.request(method.clone(), path, Some(&ours), Some(json!({}))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // The event records which key acted.
    let events = app.raw_events(&fixture.id).await;
    let activated: Value = serde_json::from_str(&events.iter().find(|e| e.0 == "LicenseActivated").unwrap().2).unwrap();
    assert_eq!(activated["actor_role"], "client");
    assert!(ours.contains(activated["actor_key_id"].as_str().unwrap()));
}

async fn a_tenant_can_require_a_client_key(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 3 })).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    let key = client_key(app, admin).await;
    assert_eq!(client_call(app, "activate", None, &fixture.key, "m1").await.0, StatusCode::OK);

    let path = format!("/api/v1/tenants/{}/settings", fixture.tenant.id);
    assert_eq!(app.get(&path, Some(admin)).await.body["requireClientKey"], false);
    let other = app.tenant("Other").await;
    let reply =
        app.request(Method::PATCH, &path, Some(&other.admin_key), Some(json!({ "requireClientKey": true }))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply =
        app.request(Method::PATCH, &path, Some(&fixture.user.key), Some(json!({ "requireClientKey": true }))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = app.request(Method::PATCH, &path, Some(admin), Some(json!({ "requireClientKey": "yes" }))).await;
    assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("requireClientKey")));
    let reply = app.request(Method::PATCH, &path, Some(admin), Some(json!({ "requireClientKey": true }))).await;
    assert_eq!((reply.status, reply.body["requireClientKey"].as_bool()), (StatusCode::OK, Some(true)));

    let (status, anonymous, _) = client_call(app, "validate", None, &fixture.key, "m1").await;
    let (_, unknown, _) = client_call(app, "validate", None, "ABCD-EFGH-JKMN-PQRS", "m1").await;
    assert_eq!((status, without_echo(anonymous)), (StatusCode::OK, without_echo(unknown)));
    let (status, body, _) = client_call(app, "validate", Some(&key), &fixture.key, "m1").await;
    assert_eq!((status, body["isValid"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    // Every process follows the setting within about a second.
    let second = app.another_server().await;
    let (_, body, _) = client_call(&second, "validate", None, &fixture.key, "m1").await;
    assert_eq!(body["isValid"], false);
}

async fn a_wrong_or_missing_master_key_stops_the_start_and_loses_nothing(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let token = activate_token(app, &fixture.key, "m1").await;

    // Another process with another master key, or none at all.
    let wrong = "11".repeat(32);
    for master_key in [Some(wrong.as_str()), None] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path().to_path_buf());
        config.database_url = Some(app.database_url.clone());
        config.master_key = master_key.map(str::to_owned);
        let error = Application::build(config).await.err().expect("the server refuses to start").to_string();
        assert!(error.contains("master key") || error.contains("KEYLEDGER_MASTER_KEY"), "{error}");
        assert!(error.contains("Nothing was changed"), "{error}");
        assert!(
            !dir.path().join("master-key").exists() || master_key.is_some(),
            "no key was made up for a sealed database"
        );
    }
    // The right key starts, and everything is as it was.
    let again = app.another_server().await;
    assert_eq!(again.validate(&fixture.key, "m1").await.body["isValid"], true);
    assert!(verifies(&fixture, &token).await.0);
    let _ = MASTER_KEY;
}

/// The key id a signed answer names.
fn answer_kid(response: &reqwest::Response) -> String {
    let signature = response.headers()["keyledger-signature"].to_str().unwrap();
    let start = signature.find("keyid=\"").expect("a keyid") + 7;
    signature[start..].split('"').next().unwrap().to_owned()
}

/// One process rotates the tenant's key and retires the old one at once,
/// while another answers validates as fast as it is asked: the other
/// signs with the old key until it hears of the rotation (about a
/// second), and every answer it signed names a key the JWKS still
/// publishes. Within two seconds it signs with the new key.
async fn a_key_retired_on_one_process_leaves_nothing_another_signed_unverifiable(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 5 })).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    activate_token(app, &fixture.key, "m1").await;
    let other = app.another_server().await;
    let validate = |server: &TestApp| {
        server.client.post(format!("{}/api/v1/licenses/validate", server.base)).json(&json!({
            "licenseKey": fixture.key, "machineId": "m1"
        }))
    };
    let old_kid = answer_kid(&validate(&other).send().await.unwrap());
    let rotated = app.post("/api/v1/signing-keys/rotate", Some(admin), json!({})).await;
    let new_kid = rotated.body["kid"].as_str().unwrap().to_owned();
    let retired = app.request(Method::DELETE, &format!("/api/v1/signing-keys/{old_kid}"), Some(admin), None).await;
    assert_eq!(retired.status, StatusCode::NO_CONTENT, "{}", retired.body);
    let started = std::time::Instant::now();
    let mut kids = Vec::new();
    while started.elapsed() < std::time::Duration::from_millis(2500) {
        kids.push(answer_kid(&validate(&other).send().await.unwrap()));
    }
    let jwks = app.get(&format!("/api/v1/tenants/{}/jwks.json", fixture.tenant.id), None).await;
    let published: Vec<&str> = jwks.body["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
    let old_answers = kids.iter().filter(|kid| **kid == old_kid).count();
    for kid in &kids {
        assert!(published.contains(&kid.as_str()), "an answer signed with {kid} after the retirement does not verify ({old_answers} of {} signed with the retired key)", kids.len());
    }
    assert_eq!(kids.last(), Some(&new_kid), "the other process signs with the new key within a second or two");
}
