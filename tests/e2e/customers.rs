//! Customers: who a tenant sells licenses to, each an aggregate with its
//! own chain in the log; licenses name theirs with `customerId`.

use keyledger_eventlog::EventLog;
use keyledger_tests::{on_both_backends, Backend, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    a_customer_is_created_found_edited_and_deleted_with_its_history,
    search_finds_by_name_or_email_in_any_case_and_pages,
    customers_are_isolated_and_bad_input_names_the_field,
    licenses_name_their_customer_and_a_customer_lists_its_licenses,
);

const GENERATE: &str = "/api/v1/fastrLicense/generate";

async fn create(app: &TestApp, tenant: &TestTenant, body: Value) -> Value {
    let reply = app.post("/api/v1/customers", Some(&tenant.admin_key), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

async fn a_customer_is_created_found_edited_and_deleted_with_its_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let customer = create(
        &app,
        &tenant,
        json!({"name": "Ada Lovelace", "email": "ada@example.com", "metadata": {"crm": "42", "tier": 2}}),
    )
    .await;
    assert_eq!(customer["version"], 1);
    assert_eq!(customer["number"], 1, "the tenant's first customer");
    assert_eq!(customer["company"], Value::Null);
    assert_eq!(customer["metadata"], json!({"crm": "42", "tier": 2}));
    let id = customer["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/customers/{id}");
    let before_edit = chrono::Utc::now();
    // A fixed wait: the edit's timestamp must come measurably after
    // `before_edit`, which only the clock moving on guarantees.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let edited = app
        .request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"company": "Analytical", "email": null})))
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["company"], "Analytical");
    assert_eq!(edited.body["email"], Value::Null, "null clears a field");
    assert_eq!(edited.body["name"], "Ada Lovelace", "a field left out keeps its value");
    assert_eq!(edited.body["version"], 2);
    let same = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"company": "Analytical"}))).await;
    assert_eq!(same.body["version"], 2, "an edit that changes nothing records nothing");
    let anonymous = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"name": null}))).await;
    assert_eq!(anonymous.status, StatusCode::BAD_REQUEST, "{}", anonymous.body);
    assert_eq!(anonymous.body["field"], "name");

    let fetched = app.get(&path, Some(&tenant.admin_key)).await;
    assert_eq!(fetched.body["company"], "Analytical");
    let then = app
        .get(
            &format!("{path}/state?at={}", before_edit.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            Some(&tenant.admin_key),
        )
        .await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert_eq!(
        (then.body["version"].as_i64(), then.body["customer"]["email"].as_str()),
        (Some(1), Some("ada@example.com"))
    );
    let too_early = app.get(&format!("{path}/state?at=2000-01-01T00:00:00Z"), Some(&tenant.admin_key)).await;
    assert_eq!(too_early.status, StatusCode::NOT_FOUND);

    let history = app.get(&format!("{path}/events"), Some(&tenant.admin_key)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let events = history.body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["CustomerCreated", "CustomerUpdated"]);
    assert_eq!(
        (events[0]["aggregateType"].as_str(), events[0]["aggregateId"].as_str()),
        (Some("Customer"), Some(id.as_str()))
    );
    assert_eq!(events[1]["data"]["company"], "Analytical");

    let deleted = app.request(Method::DELETE, &path, Some(&tenant.admin_key), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, Some(&tenant.admin_key)).await.status, StatusCode::NOT_FOUND);
    let listed = app.get("/api/v1/customers", Some(&tenant.admin_key)).await;
    assert!(listed.body["customers"].as_array().unwrap().is_empty());
    let history = app.get(&format!("{path}/events"), Some(&tenant.admin_key)).await;
    assert_eq!(history.body["events"].as_array().unwrap().len(), 3, "a deleted customer's history stays");

    let report = EventLog::new(app.db.clone()).verify(None).await.unwrap();
    assert_eq!(report.other_chains, 1, "the customer's chain is verified");
    assert!(report.broken.is_empty(), "{:?}", report.broken);
}

async fn search_finds_by_name_or_email_in_any_case_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    create(&app, &tenant, json!({"name": "Ada Lovelace", "email": "ada@analytical.example"})).await;
    create(&app, &tenant, json!({"name": "Grace Hopper", "email": "grace@navy.example"})).await;
    create(&app, &tenant, json!({"email": "LINUS@kernel.example"})).await;
    create(&app, &tenant, json!({"name": "100%_done"})).await;

    let found = |q: &str| {
        let app = &app;
        let key = tenant.admin_key.clone();
        let q = q.to_owned();
        async move {
            let reply = app.get(&format!("/api/v1/customers?q={}", urlencode(&q)), Some(&key)).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            let mut names: Vec<String> = reply.body["customers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().or(c["email"].as_str()).unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(found("hopper").await, ["Grace Hopper"], "by name, any case");
    assert_eq!(found("ANALYTICAL").await, ["Ada Lovelace"], "by email, any case");
    assert_eq!(found("linus@").await, ["LINUS@kernel.example"]);
    assert_eq!(found(".example").await.len(), 3);
    assert_eq!(found("%").await, ["100%_done"], "wildcards are taken literally");
    assert_eq!(found("_").await, ["100%_done"]);
    assert!(found("nobody").await.is_empty());

    let first = app.get("/api/v1/customers?limit=3", Some(&tenant.admin_key)).await;
    assert_eq!(first.body["customers"].as_array().unwrap().len(), 3);
    let after = first.body["nextAfter"].as_str().expect("a full page has a next").to_owned();
    let second = app.get(&format!("/api/v1/customers?limit=3&after={after}"), Some(&tenant.admin_key)).await;
    assert_eq!(second.body["customers"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["nextAfter"], Value::Null);
    let numbers: Vec<i64> = first.body["customers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["customers"].as_array().unwrap())
        .map(|c| c["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4], "oldest first, numbered in order");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'.' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn customers_are_isolated_and_bad_input_names_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let customer = create(&app, &acme, json!({"name": "Ada"})).await;
    let path = format!("/api/v1/customers/{}", customer["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&globex.admin_key)).await.status, StatusCode::NOT_FOUND);
    let edit = app.request(Method::PATCH, &path, Some(&globex.admin_key), Some(json!({"name": "Mine"}))).await;
    assert_eq!(edit.status, StatusCode::NOT_FOUND);
    assert_eq!(app.request(Method::DELETE, &path, Some(&globex.admin_key), None).await.status, StatusCode::NOT_FOUND);
    for tail in ["events", "licenses", "state?at=2030-01-01T00:00:00Z"] {
        assert_eq!(app.get(&format!("{path}/{tail}"), Some(&globex.admin_key)).await.status, StatusCode::NOT_FOUND);
    }
    let listed = app.get("/api/v1/customers?q=ada", Some(&globex.admin_key)).await;
    assert!(listed.body["customers"].as_array().unwrap().is_empty());
    let user = app.user(&acme, "u").await;
    assert_eq!(app.get(&path, Some(&user.key)).await.status, StatusCode::FORBIDDEN);
    // Another tenant's customer can't be named on a license.
    let theirs = app.post(GENERATE, Some(&globex.admin_key), json!({"customerId": customer["id"]})).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.body);

    for (bad, field) in [
        (json!({}), "name"),
        (json!({"company": "Acme"}), "name"),
        (json!({"name": " "}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"email": "not-an-address"}), "email"),
        (json!({"name": "A", "company": "\u{202e}evil"}), "company"),
        (json!({"name": "A", "metadata": "flat"}), "metadata"),
        (json!({"name": "A", "metadata": {"notes": "x".repeat(9000)}}), "metadata"),
        (json!({"name": 5}), "name"),
    ] {
        let reply = app.post("/api/v1/customers", Some(&acme.admin_key), bad.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
        assert_eq!(reply.body["field"], field, "{bad}: {}", reply.body);
    }
    for (query, field) in [("after=nope", "after"), ("limit=0", "limit"), (&*format!("q={}", "a".repeat(201)), "q")] {
        let reply = app.get(&format!("/api/v1/customers?{query}"), Some(&acme.admin_key)).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}");
    }
    let bad_id = app.get("/api/v1/customers/not-a-uuid", Some(&acme.admin_key)).await;
    assert_eq!((bad_id.status, bad_id.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("customerId")));
    let bad_at = app.get(&format!("{path}/state?at=yesterday"), Some(&acme.admin_key)).await;
    assert_eq!((bad_at.status, bad_at.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("at")));
}

async fn licenses_name_their_customer_and_a_customer_lists_its_licenses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let ada = create(&app, &tenant, json!({"name": "Ada"})).await;
    let grace = create(&app, &tenant, json!({"name": "Grace"})).await;
    let (ada_id, grace_id) = (ada["id"].as_str().unwrap(), grace["id"].as_str().unwrap());

    let first = app.generate(&tenant.admin_key, json!({"customerId": ada_id})).await;
    assert_eq!(first["customerId"], ada_id);
    let second = app.generate(&tenant.admin_key, json!({"customerId": ada_id})).await;
    let unsold = app.generate(&tenant.admin_key, json!({})).await;
    assert_eq!(unsold["customerId"], Value::Null);

    let licenses_of = |customer: &str| {
        let (app, key, customer) = (&app, tenant.admin_key.clone(), customer.to_owned());
        async move {
            let reply = app.get(&format!("/api/v1/customers/{customer}/licenses"), Some(&key)).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply.body["licenses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let ids = |licenses: &[&Value]| licenses.iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(licenses_of(ada_id).await, ids(&[&first, &second]));
    assert!(licenses_of(grace_id).await.is_empty());

    // An edit moves a license to another customer, and null takes it off.
    let path = format!("/api/v1/fastrLicense/{}", second["id"].as_str().unwrap());
    let moved = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"customerId": grace_id}))).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(moved.body["customerId"], grace_id);
    assert_eq!(licenses_of(ada_id).await, ids(&[&first]));
    assert_eq!(licenses_of(grace_id).await, ids(&[&second]));
    let history = app.get(&format!("{path}/events"), Some(&tenant.admin_key)).await;
    let last = history.body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["type"].as_str(), last["data"]["customer_id"].as_str()), (Some("LicenseEdited"), Some(grace_id)));
    let off = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"customerId": null}))).await;
    assert_eq!(off.body["customerId"], Value::Null);
    assert!(licenses_of(grace_id).await.is_empty());

    let unknown = app
        .request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"customerId": uuid::Uuid::new_v4()})))
        .await;
    assert_eq!((unknown.status, unknown.body["code"].as_str()), (StatusCode::NOT_FOUND, Some("customer_not_found")));
    let malformed = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"customerId": "x"}))).await;
    assert_eq!((malformed.status, malformed.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("customerId")));
    // A deleted customer can't be named.
    let gone =
        app.request(Method::DELETE, &format!("/api/v1/customers/{grace_id}"), Some(&tenant.admin_key), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let reply = app.post(GENERATE, Some(&tenant.admin_key), json!({"customerId": grace_id})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
