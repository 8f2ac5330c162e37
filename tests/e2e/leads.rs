//! Leads: institutions with contacts, activities and a conversion, each an
//! aggregate in the log; CSV export and an all-or-nothing CSV import; and
//! the V2 License Server's lead statistics.

use keyledger_tests::{on_both_backends, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(leads_are_kept_converted_exported_imported_and_counted);

async fn leads_are_kept_converted_exported_imported_and_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    let admin = Some(tenant.admin_key.as_str());
    let create = |body: Value| app.post("/api/v1/leads", admin, body);
    let uni = create(json!({"name": "Example University", "type": "university",
        "contacts": [{"name": "Ada Byron", "email": "ada@example.edu"}]}))
    .await;
    assert_eq!(uni.status, StatusCode::CREATED, "{}", uni.body);
    let uni_id = uni.body["id"].as_i64().unwrap();
    let co = create(json!({"name": "Widgets, \"Inc\"", "type": "company"})).await;
    assert_eq!(co.status, StatusCode::CREATED, "{}", co.body);
    let co_id = co.body["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({"type": "company"}), "name"),
        (json!({"name": "X", "type": ""}), "type"),
        (json!({"name": "X", "type": "company", "contacts": [{"name": "Y", "email": "nope"}]}), "contacts[0].email"),
        (json!({"name": "X", "type": "company", "size": 3}), "size"),
    ] {
        let refused = create(body.clone()).await;
        assert_eq!(
            (refused.status, refused.body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}: {}",
            refused.body
        );
    }

    let path = |id: i64, rest: &str| format!("/api/v1/leads/{id}{rest}");
    let added = app.post(&path(co_id, "/contacts"), admin, json!({"name": "Bo", "email": "bo@widgets.example"})).await;
    assert_eq!(added.body["contacts"].as_array().map(Vec::len), Some(1), "{}", added.body);
    let called = app.post(&path(co_id, "/activities"), admin, json!({"kind": "call", "note": "interested"})).await;
    assert_eq!(called.body["activities"][0]["kind"], "call", "{}", called.body);
    let renamed = app.request(Method::PATCH, &path(co_id, ""), admin, Some(json!({"type": "government"}))).await;
    assert_eq!(renamed.body["type"], "government", "{}", renamed.body);
    let converted = app.post(&path(uni_id, "/convert"), admin, json!({})).await;
    assert_eq!(converted.status, StatusCode::OK, "{}", converted.body);
    let customer = converted.body["convertedTo"].as_str().unwrap().to_owned();
    let made = app.get(&format!("/api/v1/customers/{customer}"), admin).await;
    assert_eq!(made.body["name"], "Example University", "a customer named after the lead: {}", made.body);
    let again = app.post(&path(uni_id, "/convert"), admin, json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Export: one row per contact, quoted where it must be.
    let export = app
        .client
        .get(format!("{}/api/v1/leads/export", app.base))
        .bearer_auth(&tenant.admin_key)
        .send()
        .await
        .unwrap();
    assert!(export.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = export.text().await.unwrap();
    assert!(csv.starts_with("id,name,type,contact_name,contact_email,converted\n"), "{csv}");
    assert!(csv.contains(&format!("{uni_id},Example University,university,Ada Byron,ada@example.edu,yes")), "{csv}");
    assert!(csv.contains(&format!("{co_id},\"Widgets, \"\"Inc\"\"\",government,Bo,bo@widgets.example,no")), "{csv}");

    // Import: a file with broken rows imports nothing and names each line.
    let import = |body: &'static str| {
        app.client
            .post(format!("{}/api/v1/leads/import", app.base))
            .bearer_auth(&tenant.admin_key)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let broken = import("name,type,contact_name,contact_email\nState Office,government,Cy,cy@state.example\n,company,,\nLab,lab,Di,not-an-email\n").await.unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["code"], "invalid_csv", "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("line 3") && message.contains("line 4") && !message.contains("line 2"), "{message}");
    assert_eq!(
        app.get("/api/v1/leads", admin).await.body["leads"].as_array().map(Vec::len),
        Some(2),
        "nothing half-imported"
    );
    let unclosed = import("name,type\n\"Open,company\n").await.unwrap();
    assert_eq!(unclosed.status(), StatusCode::BAD_REQUEST);
    let good = import("name,type,contact_name,contact_email\nState Office,government,Cy,cy@state.example\nState Office,government,Dee,\nLab,university,,\n").await.unwrap();
    assert_eq!(good.status(), StatusCode::OK);
    assert_eq!(good.json::<Value>().await.unwrap()["imported"], 2);

    // The V2 License Server's statistics, in its shape.
    let system = app.post("/api/v1/api-keys", admin, json!({"role": "system"})).await;
    let stats = app
        .client
        .get(format!("{}/leads/api/stats", app.base))
        .header("x-api-key", system.body["key"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"total_institutions": 4, "total_contacts": 4, "recent_activities": 1, "conversion_rate": 25.0,
               "by_type": {"university": 2, "government": 2}}),
    );
    // Deleted: gone from the list, its history in the log.
    assert_eq!(app.request(Method::DELETE, &path(co_id, ""), admin, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path(co_id, ""), admin).await.status, StatusCode::NOT_FOUND);
    let events: i64 = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE aggregate_type = 'Lead'").fetch_one(pool).await)
    .unwrap();
    assert_eq!(
        events,
        4 + 1 + 1 + 1 + 1 + 1,
        "four created, a contact, an activity, an update, a conversion, a deletion"
    );
    // Another tenant sees none of them.
    let other = app.tenant("Other").await;
    assert_eq!(app.get("/api/v1/leads", Some(&other.admin_key)).await.body["leads"], json!([]));
    assert_eq!(app.get(&path(uni_id, ""), Some(&other.admin_key)).await.status, StatusCode::NOT_FOUND);
}
