//! The admin panel, in a real browser (Debian's Chromium through Selenium,
//! tests/python/panel_browser.py) against the real server on both
//! backends; and its staff API and sign-in rules from plain HTTP.

use keyledger_tests::{on_both_backends, run_python, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(a_vendors_staff_run_licenses_from_the_panel_in_a_browser, staff_are_invited_through_the_api,);

/// Wrong passwords after which the test's address is blocked.
const BLOCK_AFTER: u32 = 6;

async fn a_vendors_staff_run_licenses_from_the_panel_in_a_browser(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.rate_limits = "on".to_owned();
        config.rate_limit_block_after = BLOCK_AFTER;
        config.rate_limit_block_base_secs = 60;
        config.webhook_allow_private_networks = true;
    })
    .await;
    let tenant = app.tenant("Acme").await;
    let receiver = keyledger_tests::receiver::Receiver::start(keyledger_tests::receiver::Behaviour::Accept).await;
    let hook = app
        .post(
            "/api/v1/webhooks",
            Some(&tenant.admin_key),
            json!({ "url": receiver.url, "events": ["license.suspended"] }),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let other = app.tenant("Other").await;
    let seller = app.user(&tenant, "seller").await;
    let customer = app
        .post(
            "/api/v1/customers",
            Some(&tenant.admin_key),
            json!({ "name": "Northwind Traders", "email": "it@northwind.example" }),
        )
        .await;
    assert_eq!(customer.status, StatusCode::CREATED, "{}", customer.body);
    let license = app.generate(&seller.key, json!({ "maxActivations": 2, "customerId": customer.body["id"] })).await;
    let elsewhere = app.generate(&app.user(&other, "seller").await.key, json!({})).await;
    let invite = |email: &'static str, role: &'static str| {
        let app = &app;
        let path = format!("/api/v1/tenants/{}/staff", tenant.id);
        let key = tenant.admin_key.clone();
        async move {
            let reply = app.post(&path, Some(&key), json!({ "email": email, "role": role })).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            reply.body["invitationPath"].as_str().unwrap().to_owned()
        }
    };
    let hopper = hopping_license(&app, &tenant, &seller.key).await;
    let admin_invite = invite("ana@example.com", "admin").await;
    let viewer_invite = invite("vic@example.com", "viewer").await;
    let screenshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/panel-screenshots")
        .join(format!("{backend:?}").to_lowercase());
    let axe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/vendor/axe.min.js");
    let (ok, printed) = run_python(
        "panel_browser.py",
        &[],
        &[
            ("KL_BASE", &app.base),
            ("KL_PANEL", "/admin"),
            ("KL_LICENSE_ID", license["id"].as_str().unwrap()),
            ("KL_LICENSE_KEY", license["licenseKey"].as_str().unwrap()),
            ("KL_OTHER_LICENSE", elsewhere["id"].as_str().unwrap()),
            ("KL_HOPPER_KEY", &hopper),
            ("KL_WEBHOOK_URL", &receiver.url),
            ("KL_ADMIN_INVITE", &admin_invite),
            ("KL_ADMIN_EMAIL", "ana@example.com"),
            ("KL_VIEWER_INVITE", &viewer_invite),
            ("KL_VIEWER_EMAIL", "vic@example.com"),
            ("KL_BLOCK_AFTER", &BLOCK_AFTER.to_string()),
            ("KL_SCREENSHOTS", screenshots.to_str().unwrap()),
            ("KL_AXE", axe.to_str().unwrap()),
            ("KL_OPERATOR_TOKEN", keyledger_tests::OPERATOR_TOKEN),
            ("KL_TENANT_ID", &tenant.id),
            ("SE_OFFLINE", "true"),
            ("SE_AVOID_STATS", "true"),
        ],
    )
    .await;
    assert!(ok, "the browser test failed:\n{printed}");
    // The test event sent from the panel reached the endpoint, and was sent
    // again with the same webhook-id when redelivered.
    let tests: Vec<String> = receiver
        .received()
        .iter()
        .filter(|received| received.payload()["type"] == "webhook.test")
        .map(|received| received.id().to_owned())
        .collect();
    assert!(tests.len() >= 2 && tests.iter().all(|id| *id == tests[0]), "a test and its redelivery: {tests:?}");
    // What the panel did is in the license's history, by the staff member.
    let history =
        app.get(&format!("/api/v1/licenses/{}/events", license["id"].as_str().unwrap()), Some(&tenant.admin_key)).await;
    let suspended =
        history.body["events"].as_array().unwrap().iter().find(|e| e["type"] == "LicenseSuspended").cloned();
    let suspended = suspended.unwrap_or_else(|| panic!("a suspension: {}", history.body));
    assert_eq!(suspended["metadata"]["api"], "panel", "{suspended}");
    assert!(suspended["metadata"]["actor_key_id"].as_str().unwrap().starts_with("staff:"), "{suspended}");
    let by_operator = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "LicenseSuspended" && e["metadata"]["actor_key_id"] == "operator");
    assert!(by_operator, "the operator's suspension, recorded as the operator's: {}", history.body);
}

/// A license the anomaly detector suspended for hopping between machines:
/// its key, once the anomaly is recorded.
async fn hopping_license(app: &TestApp, tenant: &keyledger_tests::TestTenant, user_key: &str) -> String {
    let settings = json!({"action": "suspend", "deviceLivedSecs": 0, "licenseHopping": {"maxMoves": 1}});
    let reply =
        app.request(reqwest::Method::PATCH, "/api/v1/anomaly-settings", Some(&tenant.admin_key), Some(settings)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let license = app.generate(user_key, json!({ "maxActivations": 1 })).await;
    let key = license["licenseKey"].as_str().unwrap().to_owned();
    let call = |path: &'static str, machine: String| {
        let body = json!({ "licenseKey": key, "machineId": machine, "machineName": "m" });
        async move { app.post(&format!("/api/v1/licenses/{path}"), None, body).await }
    };
    assert_eq!(call("activate", "hop-0".into()).await.status, StatusCode::OK);
    // The detector may suspend the license as soon as the moves pass the
    // threshold, between these calls: their answers are not the point,
    // the anomaly below is.
    for n in 1..=2 {
        call("deactivate", format!("hop-{}", n - 1)).await;
        call("activate", format!("hop-{n}")).await;
    }
    for _ in 0..200 {
        let found = app.get("/api/v1/anomalies", Some(&tenant.admin_key)).await;
        if found.body["anomalies"].as_array().is_some_and(|all| !all.is_empty()) {
            return key;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the detector found no anomaly on the hopping license");
}

/// Invitations through the API: only the tenant's admin (or the operator)
/// invites, an email signs in to one panel, bad input names its field, an
/// invitation link works once.
async fn staff_are_invited_through_the_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let other = app.tenant("Other").await;
    let path = format!("/api/v1/tenants/{}/staff", tenant.id);
    for (body, field) in [
        (json!({ "role": "admin" }), "email"),
        (json!({ "email": "not an email" }), "email"),
        (json!({ "email": "ana@example.com", "role": "owner" }), "role"),
    ] {
        let reply = app.post(&path, Some(&tenant.admin_key), body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.body);
    }
    let seller = app.user(&tenant, "seller").await;
    let refused = app.post(&path, Some(&seller.key), json!({ "email": "ana@example.com" })).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let elsewhere = app.post(&path, Some(&other.admin_key), json!({ "email": "ana@example.com" })).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "{}", elsewhere.body);

    let made = app.post(&path, Some(&tenant.admin_key), json!({ "email": " Ana@Example.com " })).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!((made.body["email"].as_str(), made.body["role"].as_str()), (Some("ana@example.com"), Some("viewer")));
    let again = app
        .post(
            &format!("/api/v1/tenants/{}/staff", other.id),
            Some(&other.admin_key),
            json!({ "email": "ana@example.com" }),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "an email signs in to one panel: {}", again.body);
    let listed = app.get(&path, Some(&tenant.admin_key)).await;
    assert_eq!(listed.body["staff"][0]["active"], false, "{}", listed.body);
    assert_eq!(app.get(&path, Some(&other.admin_key)).await.status, StatusCode::NOT_FOUND);

    // The invitation's page, then its form: a wrong form token is refused,
    // a short password is refused, and the link works once.
    let link = format!("{}/admin{}", app.base, made.body["invitationPath"].as_str().unwrap());
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    for header in ["content-security-policy", "x-frame-options", "cache-control"] {
        assert!(page.headers().contains_key(header), "{header}: {:?}", page.headers());
    }
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let form_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let form_token = form_cookie.split_once('=').unwrap().1.to_owned();
    let post = |token: &str, password: &str| {
        app.client
            .post(&link)
            .header("cookie", &form_cookie)
            .form(&[("form", token), ("password", password), ("confirm", password)])
            .send()
    };
    assert_eq!(
        post("forged-token-forged-token-forged1", "a long enough password").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(&form_token, "short").await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(post(&form_token, "a long enough password").await.unwrap().status(), StatusCode::OK);
    assert_eq!(post(&form_token, "another long password").await.unwrap().status(), StatusCode::NOT_FOUND);
    let listed = app.get(&path, Some(&tenant.admin_key)).await;
    assert_eq!(listed.body["staff"][0]["active"], true, "{}", listed.body);

    // Removing a member ends their sessions.
    let id = made.body["id"].as_str().unwrap();
    let removed = app.request(reqwest::Method::DELETE, &format!("{path}/{id}"), Some(&tenant.admin_key), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert!(app.get(&path, Some(&tenant.admin_key)).await.body["staff"].as_array().unwrap().is_empty());
}
