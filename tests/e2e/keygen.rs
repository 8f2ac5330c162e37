//! The Keygen dialect, driven by Keygen's own published client libraries
//! (keygen-sdk from PyPI; keygen-rs from crates.io, in its own small crate
//! under tests/keygen-rs-client), unchanged but for their API URL, with
//! signature checks on; then what they did, seen through the native API.

use keyledger_tests::{on_both_backends, run_python, Backend, TestApp, TestTenant};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    keygen_sdk_validates_activates_checks_out_and_deactivates,
    keygen_rs_validates_activates_checks_out_and_deactivates,
    keygen_answers_are_signed_and_bad_input_gets_keygens_errors,
    a_vendor_backend_lists_changes_suspends_and_deletes_licenses,
    guessing_keys_through_validate_key_earns_a_block,
    a_vendor_backend_creates_products_policies_and_licenses_and_renews,
);

/// A product with a feature, a license of it with two seats: (license
/// id, key).
async fn licensed(app: &TestApp, tenant: &TestTenant) -> (String, String) {
    let products = app.get("/api/v1/products", Some(&tenant.admin_key)).await;
    let existing =
        products.body["products"].as_array().and_then(|all| all.iter().find(|p| p["code"] == "STUDIO")).cloned();
    let product = match existing {
        Some(product) => product,
        None => {
            let made = app
                .post(
                    "/api/v1/products",
                    Some(&tenant.admin_key),
                    json!({"name": "Studio", "code": "STUDIO", "features": ["export"]}),
                )
                .await;
            assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
            made.body
        }
    };
    let user = app.user(tenant, "seller").await;
    let license =
        app.generate(&user.key, json!({"maxActivations": 2, "productId": product["id"], "features": ["pdf"]})).await;
    (license["id"].as_str().unwrap().to_owned(), license["licenseKey"].as_str().unwrap().to_owned())
}

/// The tenant's current public key, as 64 hex characters.
async fn public_key_hex(app: &TestApp, tenant: &TestTenant) -> String {
    let keys = app.get("/api/v1/signing-keys", Some(&tenant.admin_key)).await;
    let current = keys.body["keys"].as_array().and_then(|keys| keys.iter().find(|k| k["current"] == true)).cloned();
    let current = current.unwrap_or_else(|| panic!("a current key: {}", keys.body));
    let hex = current["publicKeyHex"].as_str().unwrap().to_owned();
    assert_eq!(hex.len(), 64, "{current}");
    hex
}

fn printed_value(printed: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    printed
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the client printed no {name}:\n{printed}"))
        .to_owned()
}

/// What a Keygen client did is a device of the license in the native API,
/// and its history names the dialect.
async fn seen_natively(app: &TestApp, tenant: &TestTenant, license_id: &str, machine_id: &str) {
    let history = app.get(&format!("/api/v1/licenses/{license_id}/events"), Some(&tenant.admin_key)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let events = history.body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for wanted in ["LicenseActivated", "LicenseCheckedOut", "LicenseDeactivated"] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    let activated = events.iter().find(|e| e["type"] == "LicenseActivated").unwrap();
    assert_eq!(activated["metadata"]["api"], "keygen", "{activated}");
    let devices = app.get(&format!("/api/v1/licenses/{license_id}/devices"), Some(&tenant.admin_key)).await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
    let ids: Vec<&str> =
        devices.body["devices"].as_array().unwrap().iter().filter_map(|d| d["deviceId"].as_str()).collect();
    assert!(ids.contains(&machine_id), "the machine {machine_id} is a device of the license: {}", devices.body);
}

async fn keygen_sdk_validates_activates_checks_out_and_deactivates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let (license_id, key) = licensed(&app, &tenant).await;
    let public_key = public_key_hex(&app, &tenant).await;
    let api_url = format!("{}/keygen/{}", app.base, tenant.id);
    let (ok, printed) = run_python("keygen_sdk_client.py", &[&api_url, &key, &public_key, "fp-python-0001"], &[]).await;
    assert!(ok, "{printed}");
    assert_eq!(printed_value(&printed, "license"), license_id);
    seen_natively(&app, &tenant, &license_id, &printed_value(&printed, "machine")).await;
}

async fn keygen_rs_validates_activates_checks_out_and_deactivates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let (license_id, key) = licensed(&app, &tenant).await;
    let public_key = public_key_hex(&app, &tenant).await;
    let api_url = format!("{}/keygen/{}", app.base, tenant.id);
    let (ok, printed) = keyledger_tests::keygen_rs_client(&[&api_url, &key, &public_key, "fp-rust-0001"]).await;
    assert!(ok, "{printed}");
    assert_eq!(printed_value(&printed, "license"), license_id);
    seen_natively(&app, &tenant, &license_id, &printed_value(&printed, "machine")).await;
}

/// Every answer carries Keygen's signature headers, errors and 204s
/// included; bad input is Keygen's error shape, never a 5xx; a license
/// key acts on its own license only.
async fn keygen_answers_are_signed_and_bad_input_gets_keygens_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let (license_id, key) = licensed(&app, &tenant).await;
    let (other_id, other_key) = licensed(&app, &tenant).await;
    let base = format!("{}/keygen/{}/v1", app.base, tenant.id);
    let send = |method: reqwest::Method, path: &str, auth: Option<String>, body: Option<&str>| {
        let mut request = app.client.request(method, format!("{base}{path}"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/vnd.api+json").body(body.to_owned());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap();
            (status, headers, text)
        }
    };
    let license = || Some(format!("License {key}"));
    let cases: Vec<(reqwest::Method, String, Option<String>, Option<&str>, StatusCode)> = vec![
        (
            reqwest::Method::POST,
            "/licenses/actions/validate-key".into(),
            None,
            Some("{\"meta\": 5}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::POST,
            "/licenses/actions/validate-key".into(),
            None,
            Some("{\"meta\": {\"key\": 7}}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::POST,
            "/licenses/actions/validate-key".into(),
            None,
            Some("not json"),
            StatusCode::BAD_REQUEST,
        ),
        // A scope that can't be checked here is refused, not ignored.
        (
            reqwest::Method::POST,
            "/licenses/actions/validate-key".into(),
            None,
            Some(r#"{"meta": {"key": "ZZZZ-ZZZZ-ZZZZ-ZZZZ", "scope": {"machine": "m-1"}}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (reqwest::Method::POST, "/machines".into(), license(), Some("{\"data\": []}"), StatusCode::BAD_REQUEST),
        (
            reqwest::Method::POST,
            "/machines".into(),
            license(),
            Some(r#"{"data": {"type": "machines", "attributes": {"fingerprint": 5}}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (reqwest::Method::GET, format!("/licenses/{other_id}"), license(), None, StatusCode::FORBIDDEN),
        (reqwest::Method::GET, format!("/licenses/{other_id}/machines"), license(), None, StatusCode::FORBIDDEN),
        (reqwest::Method::GET, "/machines/nope".into(), license(), None, StatusCode::NOT_FOUND),
        (
            reqwest::Method::GET,
            "/me".into(),
            Some("License ZZZZ-ZZZZ-ZZZZ-ZZZZ".into()),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (reqwest::Method::GET, "/me".into(), Some("Bearer nope".into()), None, StatusCode::UNAUTHORIZED),
        (reqwest::Method::GET, "/no-such-route".into(), None, None, StatusCode::NOT_FOUND),
        (
            reqwest::Method::POST,
            format!("/licenses/{license_id}/actions/check-out?ttl=60"),
            license(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::POST,
            format!("/licenses/{license_id}/actions/check-out?algorithm=rsa-sha256"),
            license(),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, auth, body, expected) in cases {
        let (status, headers, text) = send(method.clone(), &path, auth, body).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        let errors: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: JSON: {text}"));
        let first = &errors["errors"][0];
        assert!(first["title"].is_string() && first["detail"].is_string() && first["code"].is_string(), "{text}");
        for header in ["keygen-signature", "keygen-date", "keygen-digest", "date", "digest"] {
            assert!(headers.contains_key(header), "{method} {path}: {header} in {headers:?}");
        }
    }
    // An oversized fingerprint names its field.
    let big = "f".repeat(10_000);
    let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": big},
        "relationships": {"license": {"data": {"type": "licenses", "id": license_id}}}}})
    .to_string();
    let (status, _, text) = send(reqwest::Method::POST, "/machines", license(), Some(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("/data/attributes/fingerprint"), "{text}");
    // A license key may not take a seat of another license.
    let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-x"},
        "relationships": {"license": {"data": {"type": "licenses", "id": other_id}}}}})
    .to_string();
    let (status, _, text) = send(reqwest::Method::POST, "/machines", license(), Some(&body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    // ... nor free one: its own machine, found through the other key.
    let body = json!({"data": {"type": "machines", "attributes": {"fingerprint": "fp-theirs"},
        "relationships": {"license": {"data": {"type": "licenses", "id": other_id}}}}})
    .to_string();
    let (status, _, text) =
        send(reqwest::Method::POST, "/machines", Some(format!("License {other_key}")), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, _, text) = send(reqwest::Method::DELETE, "/machines/fp-theirs", license(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    // The 204 of a deactivation is signed over the empty body.
    let (status, headers, text) =
        send(reqwest::Method::DELETE, "/machines/fp-theirs", Some(format!("License {other_key}")), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(headers["keygen-digest"], "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    // Another tenant's account path does not open this tenant's licenses.
    let other = app.tenant("Other").await;
    let body = json!({"meta": {"key": key}}).to_string();
    let response = app
        .client
        .post(format!("{}/keygen/{}/v1/licenses/actions/validate-key", app.base, other.id))
        .header("content-type", "application/vnd.api+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["meta"]["code"], "NOT_FOUND", "{answer}");
    assert!(answer["data"].is_null(), "{answer}");
}

/// A Keygen JSON:API caller of one account: `(status, body)` of each call.
struct Caller<'a> {
    app: &'a TestApp,
    base: String,
}

impl<'a> Caller<'a> {
    fn new(app: &'a TestApp, tenant: &TestTenant) -> Self {
        Self { app, base: format!("{}/keygen/{}/v1", app.base, tenant.id) }
    }

    async fn call(&self, method: reqwest::Method, path: &str, auth: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.app.client.request(method, format!("{}{path}", self.base)).header("authorization", auth);
        if let Some(body) = body {
            request = request.header("content-type", "application/vnd.api+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, auth: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, auth, Some(body)).await
    }

    async fn get(&self, path: &str, auth: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, auth, None).await
    }
}

/// The vendor's backend builds its catalog and licenses through the
/// dialect: a product, its policy (the product's one), a license of that
/// policy that a client then uses, a renewal; bad requests name the member
/// at fault; a license key can do none of it; all of it is seen natively.
async fn a_vendor_backend_creates_products_policies_and_licenses_and_renews(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let other = app.tenant("Other").await;
    let keygen = Caller::new(&app, &tenant);
    let bearer = format!("Bearer {}", tenant.admin_key);

    let product = json!({"data": {"type": "products", "attributes": {"name": "Desk App"}}});
    let (status, made) = keygen.post("/products", &bearer, product.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let product_id = made["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made["data"]["attributes"]["code"], "desk-app", "{made}");
    let (status, taken) = keygen.post("/products", &bearer, product).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{taken}");
    assert_eq!(taken["errors"][0]["code"], "CODE_TAKEN", "{taken}");
    assert_eq!(taken["errors"][0]["source"]["pointer"], "/data/attributes/code", "{taken}");
    let (status, shown) = keygen.get(&format!("/products/{product_id}"), &bearer).await;
    assert_eq!((status, shown["data"]["attributes"]["name"].clone()), (StatusCode::OK, json!("Desk App")), "{shown}");
    let (_, listed) = keygen.get("/products", &bearer).await;
    assert_eq!(listed["data"][0]["id"], product_id.as_str(), "{listed}");

    let to_product = json!({"product": {"data": {"type": "products", "id": product_id}}});
    let bad_policy = json!({"data": {"type": "policies", "attributes": {"name": "Std", "heartbeatDuration": 1},
        "relationships": to_product}});
    let (status, bad) = keygen.post("/policies", &bearer, bad_policy).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["errors"][0]["source"]["pointer"], "/data/attributes/heartbeatDuration", "{bad}");
    let policy = json!({"data": {"type": "policies", "attributes": {"name": "Std", "requireHeartbeat": true,
        "heartbeatDuration": 900, "heartbeatResurrectionStrategy": "ALWAYS_REVIVE"}, "relationships": to_product}});
    let (status, made) = keygen.post("/policies", &bearer, policy.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["data"]["id"], product_id.as_str(), "a policy's id is its product's: {made}");
    assert_eq!(made["data"]["attributes"]["heartbeatDuration"], 900, "{made}");
    let (status, again) = keygen.post("/policies", &bearer, policy).await;
    assert_eq!((status, again["errors"][0]["code"].clone()), (StatusCode::CONFLICT, json!("POLICY_TAKEN")), "{again}");
    let (_, policies) = keygen.get("/policies", &bearer).await;
    assert_eq!(policies["data"][0]["attributes"]["heartbeatResurrectionStrategy"], "ALWAYS_REVIVE", "{policies}");

    let to_policy = json!({"policy": {"data": {"type": "policies", "id": product_id}}});
    let expiry = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let license = json!({"data": {"type": "licenses", "attributes": {"maxMachines": 3, "expiry": expiry},
        "relationships": to_policy}});
    for (bad, pointer) in [
        (json!({"data": {"type": "licenses"}}), "/data/relationships/policy"),
        (
            json!({"data": {"type": "licenses", "attributes": {"name": "x"}, "relationships": to_policy}}),
            "/data/attributes/name",
        ),
        (
            json!({"data": {"type": "licenses", "attributes": {"maxMachines": 0}, "relationships": to_policy}}),
            "/data/attributes/maxMachines",
        ),
        (json!({"data": {"type": "machines", "relationships": to_policy}}), "/data/type"),
        (json!({"data": {"type": "licenses", "relationships": {"user": {"data": null}}}}), "/data/relationships/user"),
        (json!({"data": [1, 2]}), "/data"),
    ] {
        let (status, refused) = keygen.post("/licenses", &bearer, bad.clone()).await;
        assert!(status.is_client_error(), "{bad}: {status} {refused}");
        assert_eq!(refused["errors"][0]["source"]["pointer"], pointer, "{bad}: {refused}");
    }
    // Another account's policy is unknown here, and this one's unknown there.
    let (status, refused) = keygen.post("/licenses", &format!("Bearer {}", other.admin_key), license.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    let elsewhere = Caller::new(&app, &other);
    let (status, refused) = elsewhere.post("/licenses", &format!("Bearer {}", other.admin_key), license.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(refused["errors"][0]["source"]["pointer"], "/data/relationships/policy/data/id", "{refused}");

    let (status, created) = keygen.post("/licenses", &bearer, license).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let license_id = created["data"]["id"].as_str().unwrap().to_owned();
    let key = created["data"]["attributes"]["key"].as_str().unwrap().to_owned();
    assert_eq!(created["data"]["attributes"]["maxMachines"], 3, "{created}");
    assert_eq!(created["data"]["attributes"]["requireHeartbeat"], true, "the policy's: {created}");
    assert_eq!(created["data"]["relationships"]["product"]["data"]["id"], product_id.as_str(), "{created}");

    // The license key can't manage; it can activate and validate.
    let license_auth = format!("License {key}");
    for (method, path) in [
        (reqwest::Method::POST, "/licenses".to_owned()),
        (reqwest::Method::GET, "/products".to_owned()),
        (reqwest::Method::POST, "/products".to_owned()),
        (reqwest::Method::GET, "/policies".to_owned()),
        (reqwest::Method::POST, "/policies".to_owned()),
        (reqwest::Method::GET, format!("/policies/{product_id}")),
        (reqwest::Method::POST, format!("/licenses/{license_id}/actions/renew")),
    ] {
        let (status, refused) = keygen.call(method.clone(), &path, &license_auth, Some(json!({"data": {}}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {refused}");
    }
    let machine = json!({"data": {"type": "machines", "attributes": {"fingerprint": "desk-1"},
        "relationships": {"license": {"data": {"type": "licenses", "id": license_id}}}}});
    let (status, activated) = keygen.post("/machines", &license_auth, machine).await;
    assert_eq!(status, StatusCode::CREATED, "{activated}");
    assert_eq!(activated["data"]["attributes"]["heartbeatDuration"], 900, "{activated}");
    let scope = json!({"meta": {"key": key, "scope": {"fingerprint": "desk-1"}}});
    let (_, validated) = keygen.post("/licenses/actions/validate-key", "", scope.clone()).await;
    assert_eq!(validated["meta"]["code"], "HEARTBEAT_NOT_STARTED", "the policy requires heartbeats: {validated}");
    let machine_id = activated["data"]["id"].as_str().unwrap();
    let (status, pinged) = keygen.post(&format!("/machines/{machine_id}/actions/ping"), &license_auth, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{pinged}");
    let (_, validated) = keygen.post("/licenses/actions/validate-key", "", scope).await;
    assert_eq!(validated["meta"]["code"], "VALID", "{validated}");

    let (status, renewed) = keygen.post(&format!("/licenses/{license_id}/actions/renew"), &bearer, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let parse = |raw: &Value| chrono::DateTime::parse_from_rfc3339(raw.as_str().unwrap()).unwrap();
    let moved = parse(&renewed["data"]["attributes"]["expiry"]) - parse(&created["data"]["attributes"]["expiry"]);
    assert!((29..=31).contains(&moved.num_days()), "renewed by its 30-day term: {moved} {renewed}");

    let native = app.get(&format!("/api/v1/licenses/{license_id}/events"), Some(&tenant.admin_key)).await;
    let types: Vec<&str> =
        native.body["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"LicenseGenerated"), "{}", native.body);
    assert_eq!(types.last(), Some(&"LicenseEdited"), "the renewal: {}", native.body);
    let generated = &native.body["events"][0];
    assert_eq!(generated["metadata"]["api"], "keygen", "{generated}");
    let shown = app.get(&format!("/api/v1/products/{product_id}"), Some(&tenant.admin_key)).await;
    assert_eq!(shown.body["policy"]["heartbeatDurationSecs"], 900, "{}", shown.body);
}

/// The vendor's backend with an admin token: list, change, suspend,
/// reinstate, delete; a license key can do none of it; every change is in
/// the license's history.
async fn a_vendor_backend_lists_changes_suspends_and_deletes_licenses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let (license_id, key) = licensed(&app, &tenant).await;
    let base = format!("{}/keygen/{}/v1", app.base, tenant.id);
    let bearer = format!("Bearer {}", tenant.admin_key);
    let call = |method: reqwest::Method, path: String, auth: String, body: Option<Value>| {
        let mut request = app.client.request(method, format!("{base}{path}")).header("authorization", auth);
        if let Some(body) = body {
            request = request.header("content-type", "application/vnd.api+json").body(body.to_string());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
        }
    };
    let (status, listed) = call(reqwest::Method::GET, "/licenses?limit=5".into(), bearer.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"][0]["id"], license_id.as_str(), "{listed}");
    let (status, refused) = call(reqwest::Method::GET, "/licenses".into(), format!("License {key}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    let body =
        json!({"data": {"type": "licenses", "attributes": {"maxMachines": 5, "expiry": "2031-01-01T00:00:00Z"}}});
    let (status, changed) =
        call(reqwest::Method::PATCH, format!("/licenses/{license_id}"), bearer.clone(), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["data"]["attributes"]["maxMachines"], 5, "{changed}");
    assert_eq!(changed["data"]["attributes"]["expiry"], "2031-01-01T00:00:00Z", "{changed}");
    let body = json!({"data": {"type": "licenses", "attributes": {"maxMachines": "five"}}});
    let (status, bad) =
        call(reqwest::Method::PATCH, format!("/licenses/{license_id}"), bearer.clone(), Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["errors"][0]["source"]["pointer"], "/data/attributes/maxMachines", "{bad}");

    let (status, suspended) =
        call(reqwest::Method::POST, format!("/licenses/{license_id}/actions/suspend"), bearer.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{suspended}");
    assert_eq!(suspended["data"]["attributes"]["status"], "SUSPENDED", "{suspended}");
    let body = json!({"meta": {"key": key}});
    let (_, validated) =
        call(reqwest::Method::POST, "/licenses/actions/validate-key".into(), String::new(), Some(body)).await;
    assert_eq!(validated["meta"]["code"], "SUSPENDED", "{validated}");
    let (status, reinstated) =
        call(reqwest::Method::POST, format!("/licenses/{license_id}/actions/reinstate"), bearer.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{reinstated}");
    assert_eq!(reinstated["data"]["attributes"]["status"], "ACTIVE", "{reinstated}");

    let (status, _) = call(reqwest::Method::DELETE, format!("/licenses/{license_id}"), bearer.clone(), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = json!({"meta": {"key": key}});
    let (_, gone) =
        call(reqwest::Method::POST, "/licenses/actions/validate-key".into(), String::new(), Some(body)).await;
    assert_eq!(gone["meta"]["code"], "NOT_FOUND", "{gone}");
    let history = app.get(&format!("/api/v1/licenses/{license_id}/events"), Some(&tenant.admin_key)).await;
    let types: Vec<&str> =
        history.body["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    for wanted in ["LicenseEdited", "LicenseSuspended", "LicenseReinstated", "LicenseDeleted"] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
}

/// validate-key is anonymous and always 200: an unknown key still counts
/// as a failed guess, so a guessing address is blocked (429, signed, in
/// Keygen's shape) while the rightful key from another address validates.
async fn guessing_keys_through_validate_key_earns_a_block(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.rate_limits = "on".to_owned();
        config.trusted_proxies = "127.0.0.1".to_owned();
        config.rate_limit_block_after = 3;
        config.rate_limit_block_base_secs = 60;
    })
    .await;
    let tenant = app.tenant("Acme").await;
    let (_, key) = licensed(&app, &tenant).await;
    let url = format!("{}/keygen/{}/v1/licenses/actions/validate-key", app.base, tenant.id);
    let validate = |address: &'static str, key: String| {
        let request = app
            .client
            .post(&url)
            .header("x-forwarded-for", address)
            .header("content-type", "application/vnd.api+json")
            .body(json!({"meta": {"key": key}}).to_string());
        async move { request.send().await.unwrap() }
    };
    let mut blocked = None;
    for n in 0..8 {
        let response = validate("203.0.113.41", format!("ZZZZ-ZZZZ-ZZZZ-{:04}", 2000 + n)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            blocked = Some(response);
            break;
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["meta"]["code"], "NOT_FOUND", "{body}");
    }
    let blocked = blocked.expect("the guessing address was blocked");
    assert!(blocked.headers().contains_key("keygen-signature"), "{:?}", blocked.headers());
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "RATE_LIMITED", "{body}");
    let rightful = validate("198.51.100.41", key).await;
    assert_eq!(rightful.status(), StatusCode::OK);
    let body: Value = rightful.json().await.unwrap();
    assert_eq!(body["meta"]["code"], "VALID", "{body}");
}
