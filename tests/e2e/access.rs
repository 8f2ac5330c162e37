//! Who may do what: keys, roles, tenants, and the handling of bad input.

use std::time::Duration;

use keyledger_tests::{eventually_result, on_both_backends, Backend, Licensed, TestApp, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(
    info_is_for_the_owner_their_admins_and_the_operator,
    revoke_follows_the_access_rules_of_info,
    another_tenants_license_does_not_exist,
    a_revoked_api_key_stops_working_at_once,
    a_tenant_always_keeps_an_admin_key,
    only_the_operator_creates_tenants,
    keys_are_issued_by_admins_or_the_operator_and_listed_without_secrets,
    suspend_and_reinstate_are_for_administrators,
    my_licenses_lists_only_the_callers_licenses,
    a_tenant_admin_pages_through_every_license_of_the_tenant_and_only_those,
    the_devices_of_a_license_are_listed_without_their_machine_ids,
    bad_input_is_a_4xx_naming_the_field,
    both_key_headers_are_accepted,
    health_and_status_answer,
    health_names_a_consumer_that_is_down,
);

async fn info_is_for_the_owner_their_admins_and_the_operator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let owner = app.user(&tenant, "owner").await;
    let colleague = app.user(&tenant, "colleague").await;
    let license = app.generate(&owner.key, json!({})).await;
    let path = format!("/api/v1/fastrLicense/info/{}", license["licenseKey"].as_str().unwrap());

    for caller in [&owner.key, &tenant.admin_key, OPERATOR_TOKEN] {
        let reply = app.get(&path, Some(caller)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["id"], license["id"]);
        assert_eq!(reply.body["licenseKey"], license["licenseKey"]);
    }
    let refused = app.get(&path, Some(&colleague.key)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["success"], false);
    assert_eq!(app.get(&path, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&path, Some("klk_nope_nope")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&path, Some("not-a-key")).await.status, StatusCode::UNAUTHORIZED);
    let unknown = app.get("/api/v1/fastrLicense/info/ABCD-EFGH-JKMN-2345", Some(&owner.key)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = app.get("/api/v1/fastrLicense/info/abc", Some(&owner.key)).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["field"], "licenseKey");
}

async fn revoke_follows_the_access_rules_of_info(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let owner = app.user(&tenant, "owner").await;
    let colleague = app.user(&tenant, "colleague").await;
    let stranger = app.tenant("Other").await;
    let license = app.generate(&owner.key, json!({})).await;
    let id = license["id"].as_str().unwrap();
    app.activate(license["licenseKey"].as_str().unwrap(), "m1").await;
    let path = format!("/api/v1/fastrLicense/revoke/{id}");

    assert_eq!(app.post(&path, Some(&colleague.key), json!({})).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.post(&path, Some(&stranger.admin_key), json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.post(&path, None, json!({})).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count_events(id, "LicenseRevoked").await, 0);
    assert_eq!(app.post(&path, Some(&tenant.admin_key), json!({})).await.status, StatusCode::OK);
    assert_eq!(app.count_events(id, "LicenseRevoked").await, 1);
    let unknown =
        app.post("/api/v1/fastrLicense/revoke/00000000-0000-0000-0000-000000000000", Some(&owner.key), json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = app.post("/api/v1/fastrLicense/revoke/not-a-uuid", Some(&owner.key), json!({})).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["field"], "licenseId");
}

async fn another_tenants_license_does_not_exist(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let acme_user = app.user(&acme, "a").await;
    let globex_user = app.user(&globex, "g").await;
    let license = app.generate(&acme_user.key, json!({})).await;
    let key = license["licenseKey"].as_str().unwrap();
    let id = license["id"].as_str().unwrap();

    // Every answer is the one for a license that does not exist at all.
    for caller in [&globex.admin_key, &globex_user.key] {
        let info = app.get(&format!("/api/v1/licenses/info/{key}"), Some(caller)).await;
        assert_eq!(info.status, StatusCode::NOT_FOUND);
        assert_eq!(info.body["code"], "license_not_found");
        assert_eq!(app.get(&format!("/api/v1/licenses/{id}"), Some(caller)).await.status, StatusCode::NOT_FOUND);
        for action in ["suspend", "reinstate", "revoke"] {
            let reply = app.post(&format!("/api/v1/licenses/{action}/{id}"), Some(caller), json!({})).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}: {}", reply.body);
        }
        let edit = app
            .request(Method::PATCH, &format!("/api/v1/licenses/{id}"), Some(caller), Some(json!({"maxActivations": 5})))
            .await;
        assert_eq!(edit.status, StatusCode::NOT_FOUND);
    }
    let theirs = app.get("/api/v1/licenses/my-licenses", Some(&globex_user.key)).await;
    assert_eq!(theirs.body, json!([]));
    assert_eq!(app.count_events(id, "LicenseSuspended").await, 0);
}

async fn a_revoked_api_key_stops_working_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let other = app.tenant("Other").await;
    let user = app.user(&tenant, "u").await;
    assert_eq!(app.get("/api/v1/licenses/my-licenses", Some(&user.key)).await.status, StatusCode::OK);

    let path = format!("/api/v1/api-keys/{}", user.id);
    let by_stranger = app.request(Method::DELETE, &path, Some(&other.admin_key), None).await;
    assert_eq!(by_stranger.status, StatusCode::NOT_FOUND);
    let by_user = app.request(Method::DELETE, &path, Some(&user.key), None).await;
    assert_eq!(by_user.status, StatusCode::FORBIDDEN);

    let deleted = app.request(Method::DELETE, &path, Some(&tenant.admin_key), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let refused = app.get("/api/v1/licenses/my-licenses", Some(&user.key)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body["success"], false);
    assert_eq!(app.request(Method::DELETE, &path, Some(&tenant.admin_key), None).await.status, StatusCode::NOT_FOUND);
}

async fn a_tenant_always_keeps_an_admin_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let listed = app.get("/api/v1/api-keys", Some(&tenant.admin_key)).await;
    let first_admin_id = listed.body[0]["id"].as_str().unwrap().to_owned();
    let last =
        app.request(Method::DELETE, &format!("/api/v1/api-keys/{first_admin_id}"), Some(&tenant.admin_key), None).await;
    assert_eq!(last.status, StatusCode::CONFLICT);
    assert_eq!(last.body["code"], "last_admin_key");
    assert_eq!(app.get("/api/v1/api-keys", Some(&tenant.admin_key)).await.status, StatusCode::OK);

    // The operator can always issue a tenant a new key, and revoke any key.
    let missing = app.post("/api/v1/api-keys", Some(OPERATOR_TOKEN), json!({"role": "admin"})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["field"], "tenantId");
    let malformed = app
        .post("/api/v1/api-keys", Some(OPERATOR_TOKEN), json!({"role": "admin", "tenantId": "no-such-tenant"}))
        .await;
    assert_eq!((malformed.status, malformed.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("tenantId")));
    let unknown = app
        .post(
            "/api/v1/api-keys",
            Some(OPERATOR_TOKEN),
            json!({"role": "admin", "tenantId": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let issued =
        app.post("/api/v1/api-keys", Some(OPERATOR_TOKEN), json!({"role": "admin", "tenantId": tenant.id})).await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let second_admin = issued.body["key"].as_str().unwrap();
    let revoked =
        app.request(Method::DELETE, &format!("/api/v1/api-keys/{first_admin_id}"), Some(OPERATOR_TOKEN), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/api-keys", Some(&tenant.admin_key)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/api-keys", Some(second_admin)).await.status, StatusCode::OK);

    // An admin can't reach into another tenant by naming it.
    let other = app.tenant("Other").await;
    let reach = app.post("/api/v1/api-keys", Some(second_admin), json!({"role": "admin", "tenantId": other.id})).await;
    assert_eq!(reach.status, StatusCode::NOT_FOUND);
}

async fn only_the_operator_creates_tenants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    for key in [&tenant.admin_key, &user.key] {
        let reply = app.post("/api/v1/tenants", Some(key), json!({"name": "Sneaky"})).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.post("/api/v1/tenants", None, json!({"name": "x"})).await.status, StatusCode::UNAUTHORIZED);
    let unnamed = app.post("/api/v1/tenants", Some(OPERATOR_TOKEN), json!({})).await;
    assert_eq!(unnamed.status, StatusCode::BAD_REQUEST);
    assert_eq!(unnamed.body["field"], "name");
    let created = app.post("/api/v1/tenants", Some(OPERATOR_TOKEN), json!({"name": "Globex"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["name"], "Globex");
    assert!(created.body["adminKey"].as_str().unwrap().starts_with("klk_"));
}

async fn keys_are_issued_by_admins_or_the_operator_and_listed_without_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let by_user = app.post("/api/v1/api-keys", Some(&user.key), json!({"role": "user"})).await;
    assert_eq!(by_user.status, StatusCode::FORBIDDEN);
    let by_operator = app.post("/api/v1/api-keys", Some(OPERATOR_TOKEN), json!({"role": "user"})).await;
    assert_eq!(by_operator.status, StatusCode::BAD_REQUEST, "the operator must name the tenant");
    assert_eq!(by_operator.body["field"], "tenantId");
    let bad_role = app.post("/api/v1/api-keys", Some(&tenant.admin_key), json!({"role": "root"})).await;
    assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_role.body["field"], "role");

    let admin = app.post("/api/v1/api-keys", Some(&tenant.admin_key), json!({"role": "admin", "name": "ops"})).await;
    assert_eq!(admin.status, StatusCode::CREATED);
    assert_eq!(admin.body["role"], "admin");
    let second_admin = admin.body["key"].as_str().unwrap();
    let listed = app.get("/api/v1/api-keys", Some(second_admin)).await;
    assert_eq!(listed.status, StatusCode::OK);
    let keys = listed.body.as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.get("key").is_none() && k.get("secretHash").is_none()));
    assert!(!listed.body.to_string().contains(&user.key));
}

async fn suspend_and_reinstate_are_for_administrators(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let owner = app.user(&tenant, "owner").await;
    let license = app.generate(&owner.key, json!({})).await;
    let id = license["id"].as_str().unwrap();
    let suspend = format!("/api/v1/licenses/suspend/{id}");
    let reinstate = format!("/api/v1/licenses/reinstate/{id}");

    assert_eq!(app.post(&suspend, Some(&owner.key), json!({})).await.status, StatusCode::FORBIDDEN);
    let by_operator = app.post(&suspend, Some(OPERATOR_TOKEN), json!({"reason": "abuse"})).await;
    assert_eq!(by_operator.status, StatusCode::OK);
    assert_eq!(by_operator.body["status"], 4);
    assert_eq!(app.post(&reinstate, Some(&owner.key), json!({})).await.status, StatusCode::FORBIDDEN);
    let by_admin = app.post(&reinstate, Some(&tenant.admin_key), json!({})).await;
    assert_eq!(by_admin.status, StatusCode::OK);
    assert_eq!(by_admin.body["status"], 0);
}

async fn my_licenses_lists_only_the_callers_licenses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user(&tenant, "alice").await;
    let bob = app.user(&tenant, "bob").await;
    let first = app.generate(&alice.key, json!({"licenseType": 0})).await;
    let second = app.generate(&alice.key, json!({"licenseType": 3})).await;
    app.generate(&bob.key, json!({})).await;

    let mine = app.get("/api/v1/fastrLicense/my-licenses", Some(&alice.key)).await;
    let keys: Vec<&str> = mine.body.as_array().unwrap().iter().map(|l| l["licenseKey"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&first["licenseKey"].as_str().unwrap()));
    assert!(keys.contains(&second["licenseKey"].as_str().unwrap()));
    let admin_owns_nothing = app.get("/api/v1/fastrLicense/my-licenses", Some(&tenant.admin_key)).await;
    assert_eq!(admin_owns_nothing.body, json!([]));
    assert_eq!(app.get("/api/v1/fastrLicense/my-licenses", Some(OPERATOR_TOKEN)).await.body, json!([]));
}

async fn a_tenant_admin_pages_through_every_license_of_the_tenant_and_only_those(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let (alice, bob) = (app.user(&acme, "alice").await, app.user(&acme, "bob").await);
    let mut made = Vec::new();
    for key in [&alice.key, &bob.key, &alice.key] {
        made.push(app.generate(key, json!({})).await["id"].as_str().unwrap().to_owned());
    }
    let theirs = app.user(&globex, "g").await;
    app.generate(&theirs.key, json!({})).await;

    let all = app.get("/api/v1/licenses", Some(&acme.admin_key)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let ids: Vec<&str> = all.body["licenses"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(made.iter().all(|id| ids.contains(&id.as_str())));
    assert_eq!(all.body["nextAfter"], json!(null));

    let first = app.get("/api/v1/licenses?limit=2", Some(&acme.admin_key)).await;
    assert_eq!(first.body["licenses"].as_array().unwrap().len(), 2);
    let after = first.body["nextAfter"].as_str().unwrap();
    let rest = app.get(&format!("/api/v1/licenses?limit=2&after={after}"), Some(&acme.admin_key)).await;
    let rest = rest.body["licenses"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    let paged: Vec<&str> =
        first.body["licenses"].as_array().unwrap().iter().chain(rest).map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(paged, ids, "pages follow one order");

    assert_eq!(app.get("/api/v1/licenses", Some(&alice.key)).await.status, StatusCode::FORBIDDEN);
    let operator = app.get("/api/v1/licenses", Some(OPERATOR_TOKEN)).await;
    assert_eq!(operator.status, StatusCode::BAD_REQUEST);
    assert_eq!(operator.body["field"], "tenantId");
    let for_globex = app.get(&format!("/api/v1/licenses?tenantId={}", globex.id), Some(OPERATOR_TOKEN)).await;
    assert_eq!(for_globex.body["licenses"].as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=x", "after=nope"] {
        let reply = app.get(&format!("/api/v1/licenses?{bad}"), Some(&acme.admin_key)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

async fn the_devices_of_a_license_are_listed_without_their_machine_ids(backend: Backend) {
    let Licensed { app, tenant, user, key, id, .. } = Licensed::new(backend, json!({"maxActivations": 3})).await;
    app.activate(&key, "serial-AAA-111").await;
    app.activate(&key, "serial-BBB-222").await;
    let reply = app.get(&format!("/api/v1/licenses/{id}/devices"), Some(&user.key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["maxActivations"], 3);
    let devices = reply.body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d["deviceId"].as_str().unwrap().len() == 36 && d["machineName"] == "test-machine"));
    assert_ne!(devices[0]["deviceId"], devices[1]["deviceId"]);
    assert!(!reply.body.to_string().contains("serial-"));
    let colleague = app.user(&tenant, "c").await;
    assert_eq!(
        app.get(&format!("/api/v1/licenses/{id}/devices"), Some(&colleague.key)).await.status,
        StatusCode::FORBIDDEN
    );
}

async fn bad_input_is_a_4xx_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let generate = "/api/v1/fastrLicense/generate";

    let malformed = app.post_raw(generate, Some(&user.key), "{\"licenseType\": 1").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "malformed_json");
    let not_object = app.post_raw(generate, Some(&user.key), "[1, 2]").await;
    assert_eq!(not_object.status, StatusCode::BAD_REQUEST);

    let cases = [
        (json!({"licenseType": "pro"}), "licenseType"),
        (json!({"licenseType": 7}), "licenseType"),
        (json!({"validityDays": 0}), "validityDays"),
        (json!({"validityDays": 1.5}), "validityDays"),
        (json!({"maxConnections": -1}), "maxConnections"),
        (json!({"maxActivations": 0}), "maxActivations"),
        (json!({"maxActivations": "3"}), "maxActivations"),
    ];
    for (body, field) in cases {
        let reply = app.post(generate, Some(&user.key), body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.body["field"], field, "{body} -> {}", reply.body);
        assert_eq!(reply.body["success"], false);
    }
    let activate = app.post_raw("/api/v1/fastrLicense/activate", None, "{\"licenseKey\":").await;
    assert_eq!(activate.status, StatusCode::BAD_REQUEST);
    assert_eq!(activate.body["success"], false);
    let long_name = "n".repeat(300);
    let license = app.generate(&user.key, json!({})).await;
    let named = app
        .post(
            "/api/v1/fastrLicense/activate",
            None,
            json!({"licenseKey": license["licenseKey"], "machineId": "m", "machineName": long_name}),
        )
        .await;
    assert_eq!(named.status, StatusCode::BAD_REQUEST);
    assert_eq!(named.body["field"], "machineName");

    let bad_path = app.get("/api/v1/fastrLicense/info/%FF%FE", Some(&user.key)).await;
    assert_eq!(bad_path.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_path.body["success"], false);

    let no_route = app.get("/api/v1/nothing-here", None).await;
    assert_eq!(no_route.status, StatusCode::NOT_FOUND);
    assert_eq!(no_route.body["code"], "route_not_found");
    let wrong_method = app.request(Method::DELETE, "/api/v1/fastrLicense/activate", None, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.body["success"], false);
    // Nothing above was half-written.
    let mine = app.get("/api/v1/fastrLicense/my-licenses", Some(&user.key)).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
}

async fn both_key_headers_are_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let via_header = app
        .client
        .get(format!("{}/api/v1/api-keys", app.base))
        .header("x-api-key", &tenant.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(via_header.status(), StatusCode::OK);
    assert_eq!(app.get("/api/v1/api-keys", Some(&tenant.admin_key)).await.status, StatusCode::OK);
    let lower_case_scheme = app
        .client
        .get(format!("{}/api/v1/api-keys", app.base))
        .header("authorization", format!("bearer {}", tenant.admin_key))
        .send()
        .await
        .unwrap();
    assert_eq!(lower_case_scheme.status(), StatusCode::OK);
    let empty_bearer_beside_a_key = app
        .client
        .get(format!("{}/api/v1/api-keys", app.base))
        .header("authorization", "Bearer ")
        .header("x-api-key", &tenant.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(empty_bearer_beside_a_key.status(), StatusCode::OK);
}

async fn health_and_status_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health = app.get("/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    assert_eq!(health.body["store"], if backend == Backend::Sqlite { "sqlite" } else { "postgres" });
    // Every background consumer of the process is listed, up and current.
    let consumers = health.body["consumers"].as_array().unwrap();
    let names: Vec<&str> = consumers.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for expected in ["projection:license_view", "validation_view_follower", "expiry-sweeper", "directory-refresh"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert_eq!(names.contains(&"commit-signal"), backend == Backend::Postgres, "{names:?}");
    for consumer in consumers {
        assert_eq!(consumer["healthy"], true, "{consumer}");
        assert_eq!(consumer["restarts"], 0, "{consumer}");
    }
    let status = app.get("/", None).await;
    assert_eq!(status.body["status"], "ok");
    assert_eq!(status.body["service"], "keyledger");
}

/// A relay that can't reach NATS fails at once and keeps failing: past the
/// health threshold `/health` is 503 and names it, and its failures are
/// counted in `/metrics`; everything else keeps answering.
async fn health_names_a_consumer_that_is_down(backend: Backend) {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = TestApp::spawn_with(backend, |config| {
        config.nats_url = Some(format!("nats://127.0.0.1:{closed_port}"));
        config.health_max_lag_secs = 1;
    })
    .await;
    // The relay fails first; the consumers that read its stream count as
    // down once they have failed for health_max_lag_secs, moments later.
    let on_nats = ["nats-relay", "webhook-dispatcher", "anomaly-detector", "resource-releaser"];
    let all_down = |body: &serde_json::Value| {
        body["consumers"].as_array().is_some_and(|consumers| {
            consumers.iter().filter(|c| on_nats.contains(&c["name"].as_str().unwrap_or_default())).count()
                == on_nats.len()
                && consumers
                    .iter()
                    .filter(|c| on_nats.contains(&c["name"].as_str().unwrap_or_default()))
                    .all(|c| c["healthy"] == false)
        })
    };
    let health = eventually_result("the consumers on NATS to count as down", Duration::from_secs(20), || async {
        let health = app.get("/health", None).await;
        if health.status == StatusCode::SERVICE_UNAVAILABLE && all_down(&health.body) {
            Ok(health)
        } else {
            Err(format!("health {}: {}", health.status, health.body))
        }
    })
    .await;
    assert_eq!(health.body["status"], "unhealthy");
    let consumers = health.body["consumers"].as_array().unwrap();
    // The relay, and the webhook dispatcher, anomaly detector and resource
    // releaser that read the relay's stream.
    let relay = consumers.iter().find(|c| c["name"] == "nats-relay").expect("the relay is listed");
    assert_eq!(relay["healthy"], false);
    assert_eq!(relay["state"], "failing");
    assert!(relay["failures"].as_u64().unwrap() >= 1);
    assert!(relay["lastError"].is_null(), "error text stays in the log, out of an open endpoint: {relay}");
    assert!(relay["failingSince"].is_string(), "{relay}");
    for consumer in consumers {
        let name = consumer["name"].as_str().unwrap();
        assert_eq!(consumer["healthy"], !on_nats.contains(&name), "{consumer}");
    }

    // The V2 License Server's live statistics raise them as alerts, to a
    // tenant's staff too (without the error text, as `/health`).
    let tenant = app.tenant("Acme").await;
    let live = app
        .client
        .get(format!("{}/api/monitoring/live-stats", app.base))
        .header("x-api-key", &tenant.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let live: serde_json::Value = live.json().await.unwrap();
    let alerts = live["alerts"].as_array().expect("alerts");
    for name in on_nats {
        let alert = alerts
            .iter()
            .find(|a| a["message"].as_str().is_some_and(|m| m.contains(&format!("consumer {name} "))))
            .unwrap_or_else(|| panic!("an alert names {name}: {live}"));
        assert_eq!(alert["type"], "error", "{alert}");
        assert!(alert["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{alert}");
    }

    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"keyledger_consumer_up{consumer="nats-relay"} 0"#), "{metrics}");
    assert!(metrics.contains(r#"keyledger_consumer_up{consumer="projection:license_view"} 1"#));
    let failures = metrics
        .lines()
        .find(|l| l.starts_with(r#"keyledger_consumer_failures_total{consumer="nats-relay"}"#))
        .expect("the relay's failures are counted");
    assert!(!failures.ends_with(" 0"), "{failures}");
}
