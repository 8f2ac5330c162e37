//! Products: a tenant's catalog, each product an aggregate with its own
//! chain in the log, beside the licenses.

use keyledger_eventlog::{ChainBreak, Database, EventLog};
use keyledger_tests::{eventually_result, on_both_backends, Backend, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    a_product_is_created_listed_updated_and_deleted_with_its_history,
    codes_are_unique_per_tenant_and_products_are_isolated,
    audit_verify_walks_product_chains_and_license_readers_skip_them,
    a_license_generated_for_a_product_starts_from_its_policy,
    validate_checks_the_product_and_features_and_answers_with_client_codes,
    releases_are_published_and_validate_answers_whether_an_update_is_out,
    a_product_with_five_by_five_keys_gives_its_licenses_such_keys,
    no_license_is_generated_for_a_product_deleted_by_another_process,
);

async fn create(app: &TestApp, tenant: &TestTenant, body: Value) -> Value {
    let reply = app.post("/api/v1/products", Some(&tenant.admin_key), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

async fn a_product_is_created_listed_updated_and_deleted_with_its_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let body =
        json!({"name": "Studio", "code": "PRO", "features": ["export", "sync", "export"], "policy": {"overage": "2"}});
    let product = create(&app, &tenant, body).await;
    assert_eq!(product["features"], json!(["export", "sync"]), "duplicates dropped");
    assert_eq!(product["policy"]["overage"], "2");
    assert_eq!(product["version"], 1);
    let id = product["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/products/{id}");
    let before_rename = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // A fixed wait: the rename's timestamp must come measurably after
    // `before_rename`, which only the clock moving on guarantees.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let listed = app.get("/api/v1/products", Some(&tenant.admin_key)).await;
    assert_eq!(listed.body["products"].as_array().unwrap().len(), 1);
    let renamed = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"name": "Studio 2"}))).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!((renamed.body["name"].as_str(), renamed.body["code"].as_str()), (Some("Studio 2"), Some("PRO")));
    assert_eq!(renamed.body["version"], 2);
    let same = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"name": "Studio 2"}))).await;
    assert_eq!(same.body["version"], 2, "an edit that changes nothing records nothing");

    let then = app.get(&format!("{path}/state?at={before_rename}"), Some(&tenant.admin_key)).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert_eq!((then.body["version"].as_i64(), then.body["product"]["name"].as_str()), (Some(1), Some("Studio")));

    let history = app.get(&format!("{path}/events"), Some(&tenant.admin_key)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let events = history.body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ProductCreated", "ProductUpdated"]);
    assert_eq!(events[0]["aggregateType"], "Product");
    assert_eq!(events[0]["aggregateId"], id.as_str());
    assert_eq!(events[0]["licenseId"], Value::Null);
    assert_eq!(events[1]["data"]["name"], "Studio 2");
    assert_eq!(events[0]["metadata"]["actor_role"], "admin");

    let deleted = app.request(Method::DELETE, &path, Some(&tenant.admin_key), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, Some(&tenant.admin_key)).await.status, StatusCode::NOT_FOUND);
    let listed = app.get("/api/v1/products", Some(&tenant.admin_key)).await;
    assert!(listed.body["products"].as_array().unwrap().is_empty());
    let history = app.get(&format!("{path}/events"), Some(&tenant.admin_key)).await;
    assert_eq!(history.body["events"].as_array().unwrap().len(), 3, "a deleted product's history stays");
    // Its code is free again.
    create(&app, &tenant, json!({"name": "Studio 3", "code": "PRO"})).await;
}

async fn codes_are_unique_per_tenant_and_products_are_isolated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let product = create(&app, &acme, json!({"name": "Studio", "code": "PRO"})).await;
    let taken = app.post("/api/v1/products", Some(&acme.admin_key), json!({"name": "Other", "code": "PRO"})).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert_eq!((taken.body["code"].as_str(), taken.body["field"].as_str()), (Some("product_code_taken"), Some("code")));
    let second = create(&app, &acme, json!({"name": "Lite", "code": "LITE"})).await;
    let renamed = format!("/api/v1/products/{}", second["id"].as_str().unwrap());
    let clash = app.request(Method::PATCH, &renamed, Some(&acme.admin_key), Some(json!({"code": "PRO"}))).await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.body);
    create(&app, &globex, json!({"name": "Their studio", "code": "PRO"})).await;

    let path = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&globex.admin_key)).await.status, StatusCode::NOT_FOUND);
    let edit = app.request(Method::PATCH, &path, Some(&globex.admin_key), Some(json!({"name": "Mine"}))).await;
    assert_eq!(edit.status, StatusCode::NOT_FOUND);
    assert_eq!(app.request(Method::DELETE, &path, Some(&globex.admin_key), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("{path}/events"), Some(&globex.admin_key)).await.status, StatusCode::NOT_FOUND);
    let listed = app.get("/api/v1/products", Some(&globex.admin_key)).await;
    assert_eq!(listed.body["products"].as_array().unwrap().len(), 1);
    let user = app.user(&acme, "u").await;
    assert_eq!(app.get(&path, Some(&user.key)).await.status, StatusCode::FORBIDDEN);

    for (bad, field) in [
        (json!({"code": "X"}), "name"),
        (json!({"name": "X"}), "code"),
        (json!({"name": "X", "code": "has space"}), "code"),
        (json!({"name": "X", "code": "Y", "features": ["ok", "not ok"]}), "features[1]"),
        (json!({"name": "X", "code": "Y", "features": "ok"}), "features"),
        (json!({"name": "X", "code": "Y", "policy": {"overage": "9"}}), "policy.overage"),
    ] {
        let reply = app.post("/api/v1/products", Some(&acme.admin_key), bad.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.body["field"], field, "{bad}: {}", reply.body);
    }
    let bad_id = app.get("/api/v1/products/not-a-uuid", Some(&acme.admin_key)).await;
    assert_eq!((bad_id.status, bad_id.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("productId")));
}

async fn audit_verify_walks_product_chains_and_license_readers_skip_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let product = create(&app, &tenant, json!({"name": "Studio", "code": "PRO"})).await;
    let id = product["id"].as_str().unwrap().to_owned();
    app.request(Method::PATCH, &format!("/api/v1/products/{id}"), Some(&tenant.admin_key), Some(json!({"name": "S2"})))
        .await;
    // License readers of the tail (the memory follower, the read-model
    // runner) pass over the product's events and stay current.
    let license = app.generate(&user.key, json!({})).await;
    let key = license["licenseKey"].as_str().unwrap();
    assert_eq!(app.activate(key, "m").await.status, StatusCode::OK);
    assert_eq!(app.validate(key, "m").await.body["isValid"], true);
    eventually_result("the server to report healthy", std::time::Duration::from_secs(10), || async {
        let health = app.get("/health", None).await;
        if health.status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("{}: {}", health.status, health.body))
        }
    })
    .await;

    let log = EventLog::new(app.db.clone());
    let clean = log.verify(None).await.unwrap();
    assert_eq!((clean.licenses, clean.other_chains), (1, 1));
    assert!(clean.broken.is_empty(), "{:?}", clean.broken);
    let edit = match &app.db {
        Database::Postgres(pool) => sqlx::query(
            "UPDATE events SET payload = REPLACE(payload::text, 'S2', 'Evil')::json WHERE aggregate_id = $1 AND sequence = 2",
        )
        .bind(&id)
        .execute(pool)
        .await
        .map(drop),
        Database::Sqlite(pool) => sqlx::query(
            "UPDATE events SET payload = REPLACE(payload, 'S2', 'Evil') WHERE aggregate_id = $1 AND sequence = 2",
        )
        .bind(&id)
        .execute(pool)
        .await
        .map(drop),
    };
    edit.unwrap();
    let report = log.verify(None).await.unwrap();
    assert_eq!(report.broken.len(), 1, "{:?}", report.broken);
    assert_eq!(report.broken[0].aggregate_type, "Product");
    assert_eq!(report.broken[0].first_break, ChainBreak::HashMismatch { sequence: 2 });
}

async fn a_license_generated_for_a_product_starts_from_its_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let user = app.user(&acme, "u").await;
    let policy = json!({"heartbeatDurationSecs": 600, "overage": "2"});
    let product =
        create(&app, &acme, json!({"name": "Studio", "code": "PRO", "features": ["export"], "policy": policy})).await;
    let product_id = product["id"].as_str().unwrap();

    let body = json!({"productId": product_id, "policy": {"overage": "1.5"}, "features": ["beta"]});
    let license = app.generate(&user.key, body).await;
    assert_eq!(license["productId"], product_id);
    assert_eq!(license["features"], json!(["beta"]));
    assert_eq!(license["policy"]["heartbeatDurationSecs"], 600, "from the product");
    assert_eq!(license["policy"]["overage"], "1.5", "the license's own");
    let plain = app.generate(&user.key, json!({})).await;
    assert_eq!((plain["productId"].clone(), plain["policy"]["overage"].clone()), (Value::Null, json!("none")));

    let globex = app.tenant("Globex").await;
    let theirs = create(&app, &globex, json!({"name": "Theirs", "code": "PRO"})).await;
    let reply = app.post("/api/v1/licenses/generate", Some(&user.key), json!({"productId": theirs["id"]})).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::NOT_FOUND, Some("product_not_found")));
    let path = format!("/api/v1/products/{product_id}");
    app.request(Method::DELETE, &path, Some(&acme.admin_key), None).await;
    let reply = app.post("/api/v1/licenses/generate", Some(&user.key), json!({"productId": product_id})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "a deleted product takes no new licenses");
    let reply = app.post("/api/v1/licenses/generate", Some(&user.key), json!({"features": ["no good"]})).await;
    assert_eq!(reply.body["field"], "features[0]");
    // The license generated for it keeps working.
    let key = license["licenseKey"].as_str().unwrap();
    assert_eq!(app.activate(key, "m").await.status, StatusCode::OK);
}

async fn validate_checks_the_product_and_features_and_answers_with_client_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let user = app.user(&acme, "u").await;
    let product = create(&app, &acme, json!({"name": "Studio", "code": "PRO", "features": ["export"]})).await;
    let product_id = product["id"].as_str().unwrap();
    let license = app.generate(&user.key, json!({"productId": product_id, "features": ["beta"]})).await;
    let (key, id) = (license["licenseKey"].as_str().unwrap(), license["id"].as_str().unwrap());
    let activated = app.activate(key, "m").await;
    assert_eq!(activated.body["code"], "VALID");
    let validate = |extra: Value| {
        let mut body = json!({"licenseKey": key, "machineId": "m"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        app.post("/api/v1/licenses/validate", None, body)
    };

    let valid = validate(json!({"productId": product_id, "features": ["export", "beta"]})).await;
    assert_eq!(
        (valid.body["isValid"].clone(), valid.body["code"].clone()),
        (json!(true), json!("VALID")),
        "{}",
        valid.body
    );
    let other = validate(json!({"productId": uuid::Uuid::new_v4().to_string()})).await;
    assert_eq!((other.status, other.body["isValid"].clone()), (StatusCode::OK, json!(false)));
    assert_eq!(
        (other.body["code"].as_str(), other.body["reason"].as_str()),
        (Some("PRODUCT_MISMATCH"), Some("product_mismatch"))
    );
    let missing = validate(json!({"features": ["export", "teams"]})).await;
    assert_eq!(missing.body["code"], "FEATURE_MISSING");
    assert_eq!(missing.body["missingFeatures"], json!(["teams"]));
    let bad = validate(json!({"productId": "nope"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!((bad.body["code"].as_str(), bad.body["field"].as_str()), (Some("INVALID_REQUEST"), Some("productId")));
    let heartbeat = app
        .post("/api/v1/licenses/heartbeat", None, json!({"licenseKey": key, "machineId": "m", "features": ["teams"]}))
        .await;
    assert_eq!(heartbeat.body["code"], "FEATURE_MISSING", "heartbeat checks as validate does");

    let unknown = app.validate("AAAA-BBBB-CCCC-DDDD", "m").await;
    assert_eq!(unknown.body["code"], "NOT_FOUND");
    let elsewhere = app.validate(key, "another").await;
    assert_eq!(elsewhere.body["code"], "OTHER_MACHINE");
    app.post(&format!("/api/v1/licenses/suspend/{id}"), Some(&acme.admin_key), json!({})).await;
    assert_eq!(app.validate(key, "m").await.body["code"], "SUSPENDED");
    app.post(&format!("/api/v1/licenses/reinstate/{id}"), Some(&acme.admin_key), json!({})).await;
    let deactivated = app.post("/api/v1/licenses/deactivate", None, json!({"licenseKey": key, "machineId": "m"})).await;
    assert_eq!(deactivated.body["code"], "DEACTIVATED");
    assert_eq!(app.validate(key, "m").await.body["code"], "NOT_ACTIVATED");
}

async fn releases_are_published_and_validate_answers_whether_an_update_is_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let user = app.user(&acme, "u").await;
    let product = create(&app, &acme, json!({"name": "Studio", "code": "PRO"})).await;
    let releases = format!("/api/v1/products/{}/releases", product["id"].as_str().unwrap());
    let publish = |body: Value| app.post(&releases, Some(&acme.admin_key), body);
    for body in [
        json!({"version": "1.0.0", "downloadUrl": "https://example.com/studio-1.0.0.dmg"}),
        json!({"version": "1.1.0", "mandatory": true, "releaseNotes": "Security fix:\n- token check"}),
        json!({"version": "1.2.0"}),
        json!({"version": "2.0.0-beta.1", "channel": "beta"}),
        json!({"version": "1.3.0", "releaseDate": "2099-01-01T00:00:00Z"}),
    ] {
        let reply = publish(body.clone()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{body}: {}", reply.body);
    }
    let again = publish(json!({"version": "1.2.0"})).await;
    assert_eq!((again.status, again.body["code"].as_str()), (StatusCode::CONFLICT, Some("release_exists")));
    for (bad, field) in [
        (json!({"version": "1.2"}), "version"),
        (json!({}), "version"),
        (json!({"version": "9.0.0", "downloadUrl": "ftp://x"}), "downloadUrl"),
        (json!({"version": "9.0.0", "channel": "no good"}), "channel"),
    ] {
        let reply = publish(bad.clone()).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{bad}");
    }
    let listed = app.get(&releases, Some(&acme.admin_key)).await;
    let versions: Vec<&str> =
        listed.body["releases"].as_array().unwrap().iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["2.0.0-beta.1", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]);
    let beta = app.get(&format!("{releases}?channel=beta"), Some(&acme.admin_key)).await;
    assert_eq!(beta.body["releases"].as_array().unwrap().len(), 1);
    let globex = app.tenant("Globex").await;
    assert_eq!(app.get(&releases, Some(&globex.admin_key)).await.status, StatusCode::NOT_FOUND);

    let license = app.generate(&user.key, json!({"productId": product["id"]})).await;
    let key = license["licenseKey"].as_str().unwrap();
    app.activate(key, "m").await;
    let validate = |version: &str| {
        app.post("/api/v1/licenses/validate", None, json!({"licenseKey": key, "machineId": "m", "appVersion": version}))
    };
    let old = validate("1.0.4").await;
    assert_eq!(old.body["isValid"], true, "{}", old.body);
    assert_eq!(
        (old.body["updateAvailable"].clone(), old.body["latestVersion"].clone(), old.body["mandatoryUpdate"].clone()),
        (json!(true), json!("1.2.0"), json!(true)),
        "the beta and the future release are not offered"
    );
    let recent = validate("1.1.0").await;
    assert_eq!(
        (recent.body["updateAvailable"].clone(), recent.body["mandatoryUpdate"].clone()),
        (json!(true), json!(false))
    );
    let current = validate("1.2.0").await;
    assert_eq!(current.body["updateAvailable"], false);
    let odd = validate("build 77").await;
    assert_eq!((odd.body["isValid"].clone(), odd.body["updateAvailable"].clone()), (json!(true), Value::Null));
    assert_eq!(odd.body["latestVersion"], "1.2.0");
    let plain = app.validate(key, "m").await;
    assert!(plain.body.get("updateAvailable").is_none(), "no appVersion, no update check");
    let history =
        app.get(&format!("/api/v1/products/{}/events", product["id"].as_str().unwrap()), Some(&acme.admin_key)).await;
    assert_eq!(history.body["events"].as_array().unwrap().len(), 6, "each release is an event of the product");
}

async fn a_product_with_five_by_five_keys_gives_its_licenses_such_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let five = "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX";
    let product = create(&app, &tenant, json!({"name": "Legacy", "code": "LEGACY", "keyFormat": five})).await;
    assert_eq!(product["keyFormat"], five);
    let license = app.generate(&tenant.admin_key, json!({"productId": product["id"]})).await;
    let key = license["licenseKey"].as_str().unwrap();
    let groups: Vec<usize> = key.split('-').map(str::len).collect();
    assert_eq!(groups, [5; 5], "{key}");
    // Keys are case-insensitive, as seed 001 says.
    assert_eq!(app.activate(&key.to_lowercase(), "m").await.status, StatusCode::OK);
    assert_eq!(app.validate(key, "m").await.body["isValid"], true);
    let info = app.get(&format!("/api/v1/licenses/info/{key}"), Some(&tenant.admin_key)).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);

    let plain = create(&app, &tenant, json!({"name": "Studio", "code": "PRO"})).await;
    assert_eq!(plain["keyFormat"], "XXXX-XXXX-XXXX-XXXX", "the default");
    let license = app.generate(&tenant.admin_key, json!({"productId": plain["id"]})).await;
    assert_eq!(license["licenseKey"].as_str().unwrap().len(), 19);
    let path = format!("/api/v1/products/{}", plain["id"].as_str().unwrap());
    let changed = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"keyFormat": five}))).await;
    assert_eq!(changed.body["keyFormat"], five, "{}", changed.body);
    let license = app.generate(&tenant.admin_key, json!({"productId": plain["id"]})).await;
    assert_eq!(license["licenseKey"].as_str().unwrap().len(), 29, "new keys take the new format");

    let bad = app
        .post("/api/v1/products", Some(&tenant.admin_key), json!({"name": "X", "code": "X", "keyFormat": "XX"}))
        .await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("keyFormat")));
    let malformed = app.validate("ABCDE-FGHJK-MNPQR-STUVW", "m").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
}

/// Generates for a product stream in on one process while another deletes
/// it: every license answered 200 was written before the deletion in the
/// log, and every generate after it is refused with product_not_found.
/// Five rounds, each with sixteen generates racing the delete.
async fn no_license_is_generated_for_a_product_deleted_by_another_process(backend: Backend) {
    const ROUNDS: usize = 5;
    const RACERS: usize = 16;
    let app = TestApp::spawn(backend).await;
    let other = app.another_server().await;
    let acme = app.tenant("Acme").await;
    let user = app.user(&acme, "u").await;
    for round in 0..ROUNDS {
        let product = create(&app, &acme, json!({"name": "Studio", "code": format!("P{round}")})).await;
        let product_id = product["id"].as_str().unwrap().to_owned();
        let generates = (0..RACERS).map(|_| {
            let (app, key, product_id) = (&app, user.key.clone(), product_id.clone());
            async move {
                let mut generated = Vec::new();
                for _ in 0..4 {
                    let reply =
                        app.post("/api/v1/licenses/generate", Some(&key), json!({"productId": product_id})).await;
                    match reply.status {
                        StatusCode::OK => generated.push(reply.body["id"].as_str().unwrap().to_owned()),
                        StatusCode::NOT_FOUND => assert_eq!(reply.body["code"], "product_not_found", "{}", reply.body),
                        status => panic!("a generate racing the delete answered {status}: {}", reply.body),
                    }
                }
                generated
            }
        });
        let delete = async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let path = format!("/api/v1/products/{product_id}");
            let deleted = other.request(Method::DELETE, &path, Some(&acme.admin_key), None).await;
            assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
        };
        let (generated, ()) = tokio::join!(futures::future::join_all(generates), delete);
        let generated: Vec<String> = generated.into_iter().flatten().collect();
        let deleted_at: i64 = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar(
            "SELECT position FROM events WHERE aggregate_id = $1 AND event_type = 'ProductDeleted'")
            .bind(&product_id)
            .fetch_one(pool)
            .await)
        .unwrap();
        for license in &generated {
            let at: i64 = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar(
                "SELECT position FROM events WHERE aggregate_id = $1 AND sequence = 1")
                .bind(license)
                .fetch_one(pool)
                .await)
            .unwrap();
            assert!(
                at < deleted_at,
                "round {round}: license {license} was generated at {at}, after the product's deletion at {deleted_at}"
            );
        }
    }
}
