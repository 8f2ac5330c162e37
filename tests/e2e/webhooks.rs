//! Webhooks end to end: endpoints managed by tenant admins, every license
//! event delivered to a receiver on loopback and verified with the stock
//! Python `standardwebhooks` package, retries, disabling, the delivery
//! log, and the refusals that keep webhooks out of private networks.

use std::collections::HashSet;
use std::time::Duration;

use keyledger_api::Config;
use keyledger_tests::receiver::{Behaviour, Received, Receiver};
use keyledger_tests::{
    eventually, eventually_result, on_both_backends, Backend, NatsServer, TestApp, TestTenant, OPERATOR_TOKEN,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    license_events_arrive_signed_and_verify_with_standardwebhooks,
    a_receiver_failing_half_its_requests_gets_every_event,
    an_endpoint_answering_410_is_disabled,
    an_endpoint_failing_too_long_is_disabled_and_resumes_when_enabled_again,
    retry_after_is_honoured,
    test_events_redelivery_and_secret_rotation,
    urls_into_private_networks_are_refused,
    webhooks_belong_to_their_tenants_admins,
    deliveries_come_from_the_nats_stream_when_there_is_one,
    deliveries_resume_after_nats_comes_back,
    shutdown_finishes_the_deliveries_in_flight,
    shutdown_hands_back_the_deliveries_not_yet_sent,
    usage_thresholds_are_sent_once_per_crossing,
    a_tenant_sets_its_usage_threshold,
    a_tenants_endpoints_are_capped,
    a_never_answering_endpoint_holds_up_only_itself,
    an_endpoint_may_ask_for_the_v2_server_documents_payload,
    a_successful_delivery_is_no_row_and_the_log_lists_every_delivery,
    a_delivery_row_from_before_first_attempts_were_kept_in_it_lists_its_attempts,
);

/// Short retries for tests; deliveries to loopback allowed.
fn webhook_config(config: &mut Config) {
    config.webhook_allow_private_networks = true;
    config.webhook_retry_schedule = "0.2,0.3,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5".to_owned();
    config.webhook_timeout_secs = 5;
}

async fn app_with_webhooks(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, webhook_config).await
}

/// Webhooks dispatched from the JetStream stream of a private nats-server.
async fn app_on_nats(backend: Backend, nats: &NatsServer) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        webhook_config(config);
        config.nats_url = Some(nats.url.clone());
    })
    .await
}

async fn create_webhook(app: &TestApp, tenant: &TestTenant, url: &str, events: Value) -> (String, String) {
    let reply = app.post("/api/v1/webhooks", Some(&tenant.admin_key), json!({"url": url, "events": events})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), reply.body["secret"].as_str().unwrap().to_owned())
}

/// Generates `count` licenses and activates each on one machine; returns
/// their ids.
async fn activations(app: &TestApp, tenant: &TestTenant, count: usize) -> Vec<String> {
    let user = app.user(tenant, "u").await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let license = app.generate(&user.key, json!({})).await;
        assert_eq!(app.activate(license["licenseKey"].as_str().unwrap(), "m1").await.status, StatusCode::OK);
        ids.push(license["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn types(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.payload()["type"].as_str().unwrap().to_owned()).collect()
}

async fn license_events_arrive_signed_and_verify_with_standardwebhooks(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let (webhook, secret) = create_webhook(&app, &tenant, &receiver.url, json!(["license.*"])).await;
    assert!(secret.starts_with("whsec_"));

    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({"maxActivations": 2})).await;
    let (key, id) = (license["licenseKey"].as_str().unwrap(), license["id"].as_str().unwrap());
    assert_eq!(app.activate(key, "m1").await.status, StatusCode::OK);
    // Heartbeats are only delivered to endpoints that name them.
    let heartbeat = app.post("/api/v1/licenses/heartbeat", None, json!({"licenseKey": key, "machineId": "m1"})).await;
    assert_eq!(heartbeat.status, StatusCode::OK);
    let deactivate = app.post("/api/v1/licenses/deactivate", None, json!({"licenseKey": key, "machineId": "m1"})).await;
    assert_eq!(deactivate.status, StatusCode::OK);
    assert_eq!(app.activate(key, "m2").await.status, StatusCode::OK);
    let revoked = app.post(&format!("/api/v1/fastrLicense/revoke/{id}"), Some(&user.key), json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK);
    // Another tenant's events never reach this tenant's endpoint.
    let other = app.tenant("Other").await;
    activations(&app, &other, 1).await;

    let received = receiver.wait_until("five license events", 20, |r| r.len() >= 5).await;
    // A fixed wait: what is looked for next is that nothing more (a
    // heartbeat, the other tenant's events) arrives, which nothing signals.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut received = if receiver.received().len() > received.len() { receiver.received() } else { received };
    // Deliveries go out concurrently, so they may arrive in any order;
    // each carries its license sequence to put them back in order.
    received.sort_by_key(|r| r.payload()["data"]["sequence"].as_i64());
    assert_eq!(
        types(&received),
        ["license.generated", "license.activated", "license.deactivated", "license.activated", "license.revoked"],
        "every event, no heartbeat, nothing of the other tenant"
    );
    let mut sequence = 0;
    for delivery in &received {
        let payload = delivery.payload();
        let data = &payload["data"];
        assert_eq!(delivery.id(), data["eventId"].as_str().unwrap(), "webhook-id is the event's id");
        assert_eq!(data["licenseId"], id);
        assert_eq!(data["tenantId"], tenant.id.as_str());
        assert_eq!(data["hash"].as_str().unwrap().len(), 64);
        let next = data["sequence"].as_i64().unwrap();
        assert!(next > sequence, "sequences let a consumer see it missed nothing");
        assert!(next <= sequence + 2, "only the heartbeat is skipped");
        sequence = next;
        assert!(payload["timestamp"].is_string());
        assert_eq!(delivery.headers["content-type"], "application/json");
    }
    let verified = Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
    assert_eq!(verified.lines().count(), 5, "{verified}");

    // The delivery log has each one, succeeded at the first attempt.
    let log = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries"), Some(&tenant.admin_key)).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let deliveries = log.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 5);
    for delivery in deliveries {
        assert_eq!(delivery["status"], "succeeded", "{delivery}");
        assert_eq!(delivery["attempts"][0]["statusCode"], 200);
        assert!(delivery["attempts"][0]["latencyMs"].is_i64());
    }
    let filtered = app
        .get(&format!("/api/v1/webhooks/{webhook}/deliveries?event=license.activated"), Some(&tenant.admin_key))
        .await;
    assert_eq!(filtered.body["deliveries"].as_array().unwrap().len(), 2);
    let paged = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries?limit=3"), Some(&tenant.admin_key)).await;
    let after = paged.body["nextAfter"].as_str().unwrap();
    let rest =
        app.get(&format!("/api/v1/webhooks/{webhook}/deliveries?limit=3&after={after}"), Some(&tenant.admin_key)).await;
    assert_eq!(rest.body["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(rest.body["deliveries"][1]["event"], "license.generated", "oldest last");
}

async fn a_receiver_failing_half_its_requests_gets_every_event(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::FailHalf).await;
    let tenant = app.tenant("Acme").await;
    let (webhook, secret) = create_webhook(&app, &tenant, &receiver.url, json!(["*"])).await;
    activations(&app, &tenant, 15).await;
    let received = receiver
        .wait_until("30 events accepted", 120, |r| {
            r.iter().filter(|d| d.status == 200).map(Received::id).collect::<HashSet<_>>().len() >= 30
        })
        .await;
    assert!(received.iter().any(|d| d.status == 500), "some attempts failed");
    Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
    // A retry carries the same webhook-id; every failed id came again.
    let accepted = receiver.accepted_ids();
    for failed in received.iter().filter(|d| d.status == 500) {
        assert!(accepted.contains(failed.id()), "{} was retried until accepted", failed.id());
    }
    let log = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries?limit=200"), Some(&tenant.admin_key)).await;
    let deliveries = log.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 30);
    assert!(deliveries.iter().all(|d| d["status"] == "succeeded"));
    let retried = deliveries.iter().find(|d| d["attemptCount"].as_i64().unwrap() > 1).expect("a retried delivery");
    assert_eq!(retried["attempts"][0]["statusCode"], 500);
    assert!(retried["attempts"][0]["error"].as_str().unwrap().contains("500"));
}

async fn an_endpoint_answering_410_is_disabled(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Status(410)).await;
    let tenant = app.tenant("Acme").await;
    let (webhook, _) = create_webhook(&app, &tenant, &receiver.url, json!(["*"])).await;
    activations(&app, &tenant, 1).await;
    receiver.wait_until("a first attempt", 20, |r| !r.is_empty()).await;
    let path = format!("/api/v1/webhooks/{webhook}");
    let endpoint = wait_for_endpoint(&app, &tenant, &path, |e| e["enabled"] == false).await;
    assert_eq!(endpoint["disabledReason"], "gone");
    // Every delivery answered 410 waits, as the endpoint's other queued
    // deliveries do, for the endpoint to be enabled again. The list reads
    // a delivery's row and then its attempts: one recorded between the
    // two reads shows its attempt beside the status before it, so the
    // list is read again.
    let statuses = eventually_result("the deliveries answered 410 to be pending", Duration::from_secs(10), || async {
        let log = app.get(&format!("{path}/deliveries"), Some(&tenant.admin_key)).await;
        let statuses: Vec<Value> = log.body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["attempts"][0]["statusCode"] == 410)
            .map(|d| d["status"].clone())
            .collect();
        if !statuses.is_empty() && statuses.iter().all(|status| status == "pending") {
            Ok(statuses)
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await;
    let count = receiver.received().len();
    activations(&app, &tenant, 1).await;
    // A fixed wait: what is looked for is that nothing new arrives, which
    // nothing signals.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(receiver.received().len() <= count + 1, "a disabled endpoint gets nothing new");
    // The endpoint moved; enabled again at its new address, it is sent
    // what was answered 410, and nothing is lost.
    let moved = Receiver::start(Behaviour::Accept).await;
    let patch = json!({ "url": moved.url, "enabled": true });
    let reply = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(patch)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answered_gone = statuses.len();
    moved.wait_until("the deliveries answered 410", 20, |r| r.len() >= answered_gone).await;
}

async fn wait_for_endpoint(app: &TestApp, tenant: &TestTenant, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually_result("the endpoint to change", Duration::from_secs(20), || async {
        let endpoint = app.get(path, Some(&tenant.admin_key)).await.body;
        if done(&endpoint) {
            Ok(endpoint)
        } else {
            Err(format!("endpoint stayed {endpoint}"))
        }
    })
    .await
}

async fn an_endpoint_failing_too_long_is_disabled_and_resumes_when_enabled_again(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        webhook_config(config);
        config.webhook_disable_after_secs = 1;
        config.webhook_retry_schedule = "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5".to_owned();
    })
    .await;
    let receiver = Receiver::start(Behaviour::Status(500)).await;
    let tenant = app.tenant("Acme").await;
    let (webhook, secret) = create_webhook(&app, &tenant, &receiver.url, json!(["license.generated"])).await;
    activations(&app, &tenant, 2).await;
    let path = format!("/api/v1/webhooks/{webhook}");
    let endpoint = wait_for_endpoint(&app, &tenant, &path, |e| e["enabled"] == false).await;
    assert_eq!(endpoint["disabledReason"], "failing");
    assert!(endpoint["failingSince"].is_string());
    let pending = app.get(&format!("{path}/deliveries?status=pending"), Some(&tenant.admin_key)).await;
    assert_eq!(pending.body["deliveries"].as_array().unwrap().len(), 2, "queued, not given up");

    receiver.set(Behaviour::Accept);
    let enabled = app.request(Method::PATCH, &path, Some(&tenant.admin_key), Some(json!({"enabled": true}))).await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    assert_eq!(enabled.body["enabled"], true);
    assert!(enabled.body["disabledReason"].is_null());
    let received = receiver.wait_until("both queued deliveries", 20, |_| receiver.accepted_ids().len() == 2).await;
    let accepted: Vec<Received> = received.into_iter().filter(|r| r.status == 200).collect();
    Receiver::verify_with_standardwebhooks(&accepted, &[&secret]).await;
}

async fn retry_after_is_honoured(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Busy(2)).await;
    let tenant = app.tenant("Acme").await;
    create_webhook(&app, &tenant, &receiver.url, json!(["license.generated"])).await;
    activations(&app, &tenant, 1).await;
    receiver.wait_until("a first attempt", 20, |r| !r.is_empty()).await;
    receiver.set(Behaviour::Accept);
    let received = receiver.wait_until("the retry", 20, |r| r.len() >= 2).await;
    let first = received[0].headers["webhook-timestamp"].parse::<i64>().unwrap();
    let second = received[1].headers["webhook-timestamp"].parse::<i64>().unwrap();
    assert!(second - first >= 2, "the retry waited for Retry-After (2 s), not the 0.2 s schedule: {first} → {second}");
    assert_eq!(received[0].id(), received[1].id());
}

async fn test_events_redelivery_and_secret_rotation(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let (webhook, old_secret) = create_webhook(&app, &tenant, &receiver.url, json!(["license.activated"])).await;
    let path = format!("/api/v1/webhooks/{webhook}");

    let test = app.post(&format!("{path}/test"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{}", test.body);
    let received = receiver.wait_until("the test event", 20, |r| !r.is_empty()).await;
    assert_eq!(received[0].payload()["type"], "webhook.test");
    Receiver::verify_with_standardwebhooks(&received, &[&old_secret]).await;

    // After a rotation both secrets sign, so a receiver still on the old
    // one and one already on the new one both verify.
    let rotated = app.post(&format!("{path}/rotate-secret"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    activations(&app, &tenant, 1).await;
    let received = receiver.wait_until("the activation", 20, |r| r.len() >= 2).await;
    let activation = &received[1];
    assert_eq!(activation.headers["webhook-signature"].split(' ').count(), 2);
    Receiver::verify_with_standardwebhooks(std::slice::from_ref(activation), &[&old_secret]).await;
    Receiver::verify_with_standardwebhooks(std::slice::from_ref(activation), &[&new_secret]).await;

    // Redelivery sends the same event again, with the same webhook-id.
    let log = app.get(&format!("{path}/deliveries?event=license.activated"), Some(&tenant.admin_key)).await;
    let delivery = log.body["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let again = app.post(&format!("{path}/deliveries/{delivery}/redeliver"), Some(&tenant.admin_key), json!({})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let received = receiver.wait_until("the redelivery", 20, |r| r.len() >= 3).await;
    assert_eq!(received[2].id(), activation.id());
    let missing = app
        .post(&format!("{path}/deliveries/{}/redeliver", uuid::Uuid::new_v4()), Some(&tenant.admin_key), json!({}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn urls_into_private_networks_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("Acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "not a url",
    ] {
        let reply = app.post("/api/v1/webhooks", Some(&tenant.admin_key), json!({"url": url, "events": ["*"]})).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
        assert_eq!(reply.body["field"], "url", "{url}: {}", reply.body);
    }
    let bad_events = [json!([]), json!(["licence.*"]), json!(["license.activate"]), json!("*")];
    for events in bad_events {
        let reply = app
            .post(
                "/api/v1/webhooks",
                Some(&tenant.admin_key),
                json!({"url": "https://example.com/h", "events": events}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{events}: {}", reply.body);
    }
}

async fn webhooks_belong_to_their_tenants_admins(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let acme = app.tenant("Acme").await;
    let other = app.tenant("Other").await;
    let user = app.user(&acme, "u").await;
    let (webhook, _) = create_webhook(&app, &acme, &receiver.url, json!(["*"])).await;
    let body = json!({"url": receiver.url, "events": ["*"]});
    for caller in [user.key.as_str(), OPERATOR_TOKEN] {
        assert_eq!(app.post("/api/v1/webhooks", Some(caller), body.clone()).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.post("/api/v1/webhooks", None, body).await.status, StatusCode::UNAUTHORIZED);
    let path = format!("/api/v1/webhooks/{webhook}");
    assert_eq!(app.get(&path, Some(&other.admin_key)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.request(Method::DELETE, &path, Some(&other.admin_key), None).await.status, StatusCode::NOT_FOUND);
    let listed = app.get("/api/v1/webhooks", Some(&other.admin_key)).await;
    assert_eq!(listed.body["webhooks"], json!([]));
    let listed = app.get("/api/v1/webhooks", Some(&acme.admin_key)).await;
    assert_eq!(listed.body["webhooks"][0]["id"], webhook.as_str());
    assert!(listed.body["webhooks"][0].get("secret").is_none(), "the secret is shown once");
    let edited = app
        .request(
            Method::PATCH,
            &path,
            Some(&acme.admin_key),
            Some(json!({"events": ["license.revoked"], "description": "ops"})),
        )
        .await;
    assert_eq!(edited.body["events"], json!(["license.revoked"]));
    assert_eq!(edited.body["description"], "ops");
    assert_eq!(app.request(Method::DELETE, &path, Some(&acme.admin_key), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, Some(&acme.admin_key)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/webhooks/not-a-uuid", Some(&acme.admin_key)).await.status, StatusCode::BAD_REQUEST);
}

async fn deliveries_come_from_the_nats_stream_when_there_is_one(backend: Backend) {
    let nats = NatsServer::start().await;
    let app = app_on_nats(backend, &nats).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let (_, secret) = create_webhook(&app, &tenant, &receiver.url, json!(["license.*"])).await;
    activations(&app, &tenant, 5).await;
    let received = receiver.wait_until("ten events by way of NATS", 30, |r| r.len() >= 10).await;
    Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
    let ids: HashSet<&str> = received.iter().map(Received::id).collect();
    assert_eq!(ids.len(), 10, "each event once");
    let health = app.get("/health", None).await;
    let dispatcher = health.body["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "webhook-dispatcher")
        .unwrap()
        .clone();
    assert_eq!(dispatcher["healthy"], true, "{dispatcher}");
}

/// Two processes on one PostgreSQL database share the deliveries: every
/// event arrives, and no delivery's attempts ever overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_send_one_attempt_at_once() {
    let first = app_with_webhooks(Backend::Postgres).await;
    let second = first.another_server_with(webhook_config).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    receiver.answer_after(Duration::from_millis(30));
    let tenant = first.tenant("Acme").await;
    create_webhook(&first, &tenant, &receiver.url, json!(["*"])).await;
    let (a, b) = tokio::join!(activations(&first, &tenant, 10), activations(&second, &tenant, 10));
    assert_eq!(a.len() + b.len(), 20);
    let received = receiver.wait_until("40 events", 60, |_| receiver.accepted_ids().len() >= 40).await;
    assert_eq!(receiver.overlaps(), Vec::<String>::new());
    let ids: Vec<&str> = received.iter().map(Received::id).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "each event sent once when nothing fails");
}

async fn deliveries_resume_after_nats_comes_back(backend: Backend) {
    let mut nats = NatsServer::start().await;
    let app = app_on_nats(backend, &nats).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let (_, secret) = create_webhook(&app, &tenant, &receiver.url, json!(["license.activated"])).await;
    activations(&app, &tenant, 3).await;
    receiver.wait_until("three events by way of NATS", 30, |r| r.len() >= 3).await;

    nats.stop();
    // Writes go on while NATS is down; their webhooks wait for it.
    activations(&app, &tenant, 3).await;
    // A fixed wait: what is looked for is that nothing new arrives, which
    // nothing signals.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.accepted_ids().len(), 3, "nothing new arrives while NATS is down");
    nats.resume().await;
    let received =
        receiver.wait_until("all six after NATS came back", 60, |_| receiver.accepted_ids().len() == 6).await;
    Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
}

/// SIGTERM while an attempt is in flight: the server stops only after
/// the attempt was answered and recorded, so it is not sent again.
async fn shutdown_finishes_the_deliveries_in_flight(backend: Backend) {
    let (app, stop) = TestApp::spawn_stoppable(backend, webhook_config).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    receiver.answer_after(Duration::from_millis(1500));
    let tenant = app.tenant("Acme").await;
    let (webhook, _) = create_webhook(&app, &tenant, &receiver.url, json!(["license.activated"])).await;
    activations(&app, &tenant, 1).await;
    eventually("a delivery to start", Duration::from_secs(20), || async { (receiver.in_flight() > 0).then_some(()) })
        .await;
    stop.stop().await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "answered before the server stopped");
    let status: String = keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar(
        "SELECT status FROM webhook_deliveries WHERE endpoint_id = $1")
        .bind(&webhook)
        .fetch_one(pool)
        .await)
    .unwrap();
    assert_eq!(status, "succeeded", "the attempt was recorded before the process ended");
}

/// SIGTERM with more deliveries waiting than the process has under way:
/// those in flight are finished and recorded, and none is left claimed, so
/// any process sends the rest at once instead of waiting for claims to run
/// out. A process with delivery off writes the events first, so the
/// delivering one finds them all at once; the receiver holds each attempt
/// for seconds, so the dispatcher's batches end with their attempts under
/// way (claimed rows) and the rest queued as rows, and the endpoint's 16
/// lanes (shared by the dispatcher and the sender) bound what is sent.
async fn shutdown_hands_back_the_deliveries_not_yet_sent(backend: Backend) {
    const EVENTS: usize = 400;
    let quiet = TestApp::spawn_with(backend, |config| {
        webhook_config(config);
        config.webhook_delivery = "off".to_owned();
    })
    .await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    receiver.answer_after(Duration::from_secs(5));
    let tenant = quiet.tenant("Acme").await;
    let (webhook, _) = create_webhook(&quiet, &tenant, &receiver.url, json!(["license.activated"])).await;
    activations(&quiet, &tenant, EVENTS).await;
    let count = |sql: &'static str| {
        let (db, webhook) = (quiet.db.clone(), webhook.clone());
        async move {
            keyledger_eventlog::on_pool!(&db, pool => sqlx::query_scalar::<_, i64>(sql).bind(&webhook).fetch_one(pool).await)
                .unwrap()
        }
    };
    let (_delivering, stop) = quiet.another_stoppable_server_with(webhook_config).await;
    eventually_result("the deliveries to be all recorded", Duration::from_secs(20), || async {
        let recorded = count("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1").await;
        if recorded >= EVENTS as i64 {
            Ok(())
        } else {
            Err(format!("{recorded} of {EVENTS}"))
        }
    })
    .await;
    stop.stop().await;
    let answered = receiver.received().len();
    assert!(answered <= 4 * 64, "at most four batches were under way ({answered} answered)");
    let held = count(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' AND claimed_until IS NOT NULL",
    )
    .await;
    assert_eq!(held, 0, "no delivery is left claimed by the stopped process");
    // Counted from the table, not the receiver: a request can reach the
    // receiver as the process stops and be handed back unanswered.
    let succeeded =
        count("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'succeeded'").await;
    assert!(succeeded <= answered as i64, "{succeeded} succeeded, {answered} reached the receiver");
    let pending = count("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'").await;
    assert_eq!(pending, EVENTS as i64 - succeeded, "every delivery not delivered is pending, due at once");
}

/// Seed 003's usage threshold alerts: 80% and 100% of the seats, each
/// when the seats in use cross it upwards.
async fn usage_thresholds_are_sent_once_per_crossing(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let (_, secret) = create_webhook(&app, &tenant, &receiver.url, json!(["license.usage_threshold"])).await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({"maxActivations": 5})).await;
    let key = license["licenseKey"].as_str().unwrap();
    for machine in ["m1", "m2", "m3", "m4", "m5"] {
        assert_eq!(app.activate(key, machine).await.status, StatusCode::OK);
    }
    // A seat freed and taken again crosses 100% again, not 80%.
    let body = json!({"licenseKey": key, "machineId": "m5"});
    assert_eq!(app.post("/api/v1/licenses/deactivate", None, body).await.status, StatusCode::OK);
    assert_eq!(app.activate(key, "m6").await.status, StatusCode::OK);
    // Activating a machine that holds a seat already crosses nothing.
    assert_eq!(app.activate(key, "m6").await.status, StatusCode::OK);

    let received = receiver.wait_until("three alerts", 20, |r| r.len() >= 3).await;
    // A fixed wait: what is looked for next is that no fourth alert
    // arrives, which nothing signals.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut alerts: Vec<Value> = receiver.received().iter().map(Received::payload).collect();
    alerts.sort_by_key(|a| a["data"]["sequence"].as_i64());
    let seen: Vec<(i64, i64)> = alerts
        .iter()
        .map(|a| (a["data"]["threshold"].as_i64().unwrap(), a["data"]["seatsUsed"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen, [(80, 4), (100, 5), (100, 5)]);
    for alert in &alerts {
        assert_eq!(alert["type"], "license.usage_threshold");
        assert_eq!(alert["data"]["seats"], 5);
        assert_eq!(alert["data"]["licenseId"], license["id"]);
    }
    Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
}

/// A tenant sets its own threshold (here 50%): alerts come at it and at
/// all seats taken, not at 80%. Bad values are refused naming the field.
async fn a_tenant_sets_its_usage_threshold(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let settings = format!("/api/v1/tenants/{}/settings", tenant.id);
    let before = app.get(&settings, Some(&tenant.admin_key)).await;
    assert_eq!(before.body["usageThresholdPercent"], 80, "{}", before.body);
    for bad in [json!(0), json!(101), json!(50.5), json!("50")] {
        let body = json!({ "usageThresholdPercent": bad, "requireClientKey": true });
        let refused = app.request(Method::PATCH, &settings, Some(&tenant.admin_key), Some(body)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {}", refused.body);
        assert_eq!(refused.body["field"], "usageThresholdPercent", "{}", refused.body);
    }
    let unchanged = app.get(&settings, Some(&tenant.admin_key)).await;
    assert_eq!(unchanged.body["requireClientKey"], false, "a refused request changes nothing: {}", unchanged.body);
    let body = json!({ "usageThresholdPercent": 50 });
    let set = app.request(Method::PATCH, &settings, Some(&tenant.admin_key), Some(body)).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["usageThresholdPercent"], 50);
    let other = app.tenant("Other").await;
    let theirs = format!("/api/v1/tenants/{}/settings", other.id);
    let not_yours =
        app.request(Method::PATCH, &theirs, Some(&tenant.admin_key), Some(json!({"usageThresholdPercent": 10}))).await;
    assert_eq!(not_yours.status, StatusCode::NOT_FOUND, "{}", not_yours.body);

    create_webhook(&app, &tenant, &receiver.url, json!(["license.usage_threshold"])).await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({"maxActivations": 4})).await;
    let key = license["licenseKey"].as_str().unwrap();
    for machine in ["m1", "m2", "m3", "m4"] {
        assert_eq!(app.activate(key, machine).await.status, StatusCode::OK);
    }
    receiver.wait_until("two alerts", 20, |r| r.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen: Vec<(i64, i64)> = receiver
        .received()
        .iter()
        .map(Received::payload)
        .map(|a| (a["data"]["threshold"].as_i64().unwrap(), a["data"]["seatsUsed"].as_i64().unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, [(50, 2), (100, 4)]);
}

/// One event fans out to every endpoint of its tenant, so a tenant may
/// have at most KEYLEDGER_WEBHOOK_MAX_ENDPOINTS of them.
async fn a_tenants_endpoints_are_capped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        webhook_config(config);
        config.webhook_max_endpoints = 3;
    })
    .await;
    let (acme, other) = (app.tenant("Acme").await, app.tenant("Other").await);
    let create = |key: String| {
        let app = &app;
        async move {
            app.post("/api/v1/webhooks", Some(&key), json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] })).await
        }
    };
    for _ in 0..3 {
        assert_eq!(create(acme.admin_key.clone()).await.status, StatusCode::CREATED);
    }
    let refused = create(acme.admin_key.clone()).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["code"], "webhook_endpoint_limit", "{}", refused.body);
    // Another tenant has its own allowance.
    assert_eq!(create(other.admin_key.clone()).await.status, StatusCode::CREATED);
    let listed = app.get("/api/v1/webhooks", Some(&acme.admin_key)).await;
    assert_eq!(listed.body["webhooks"].as_array().map(Vec::len), Some(3), "{}", listed.body);
}

/// One tenant's receiver takes every connection and never answers; the
/// attempt timeout is long (30 s). Another tenant's fast receiver still
/// gets each of its deliveries, and its failing receiver's failures are
/// recorded, while every attempt at the slow one is still under way:
/// nothing waits on an unrelated endpoint. The slow one has at most
/// `ENDPOINT_IN_FLIGHT` attempts under way at once.
async fn a_never_answering_endpoint_holds_up_only_itself(backend: Backend) {
    const SLOW_EVENTS: usize = 40;
    const FAST_EVENTS: usize = 10;
    let app = TestApp::spawn_with(backend, |config| {
        webhook_config(config);
        config.webhook_timeout_secs = 30;
    })
    .await;
    let slow = Receiver::start(Behaviour::Accept).await;
    slow.answer_after(Duration::from_secs(120));
    let (fast, failing) = (Receiver::start(Behaviour::Accept).await, Receiver::start(Behaviour::Status(500)).await);
    let (stalled, other) = (app.tenant("Stalled").await, app.tenant("Other").await);
    let (slow_hook, _) = create_webhook(&app, &stalled, &slow.url, json!(["license.activated"])).await;
    create_webhook(&app, &other, &fast.url, json!(["license.activated"])).await;
    let (failing_hook, _) = create_webhook(&app, &other, &failing.url, json!(["license.activated"])).await;

    activations(&app, &stalled, SLOW_EVENTS).await;
    eventually("the slow endpoint's attempts to start", Duration::from_secs(20), || async {
        (slow.in_flight() > 0).then_some(())
    })
    .await;
    activations(&app, &other, FAST_EVENTS).await;
    fast.wait_until("every fast delivery", 20, |r| r.len() >= FAST_EVENTS).await;
    let failing_recorded =
        eventually_result("the failing endpoint's failures to be recorded", Duration::from_secs(20), || async {
            let log = app.get(&format!("/api/v1/webhooks/{failing_hook}/deliveries"), Some(&other.admin_key)).await;
            let deliveries = log.body["deliveries"].as_array().cloned().unwrap_or_default();
            let tried = deliveries.iter().filter(|d| !d["attempts"].as_array().is_none_or(Vec::is_empty)).count();
            if tried >= FAST_EVENTS {
                Ok(tried)
            } else {
                Err(format!("{tried} of {FAST_EVENTS} tried"))
            }
        })
        .await;
    assert_eq!(failing_recorded, FAST_EVENTS);

    // All of that while no attempt at the slow endpoint has ended.
    assert!(slow.received().is_empty(), "the slow receiver has answered nothing yet");
    let log = app.get(&format!("/api/v1/webhooks/{slow_hook}/deliveries"), Some(&stalled.admin_key)).await;
    let deliveries = log.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), SLOW_EVENTS);
    assert!(
        deliveries.iter().all(|d| d["attempts"].as_array().is_some_and(Vec::is_empty)),
        "no attempt at the slow endpoint has been recorded: {}",
        log.body
    );
    let under_way = slow.in_flight();
    assert!(
        (1..=keyledger_workers::ENDPOINT_IN_FLIGHT).contains(&under_way),
        "{under_way} attempts under way at the slow endpoint, at most {}",
        keyledger_workers::ENDPOINT_IN_FLIGHT
    );
}

/// An endpoint with `payloadFormat: "v2-server"` gets the V2 License
/// Server document's payload, with its integer ids, signed and verified
/// as every delivery is; an endpoint beside it keeps keyledger's.
async fn an_endpoint_may_ask_for_the_v2_server_documents_payload(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let (v2, native) = (Receiver::start(Behaviour::Accept).await, Receiver::start(Behaviour::Accept).await);
    let tenant = app.tenant("Acme").await;
    let body = json!({"url": v2.url, "events": ["license.activated"], "payloadFormat": "v2-server"});
    let created = app.post("/api/v1/webhooks", Some(&tenant.admin_key), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["payloadFormat"], "v2-server", "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    create_webhook(&app, &tenant, &native.url, json!(["license.activated"])).await;
    let bad = app
        .post(
            "/api/v1/webhooks",
            Some(&tenant.admin_key),
            json!({"url": v2.url, "events": ["*"], "payloadFormat": "xml"}),
        )
        .await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("payloadFormat")));

    let customer = app.post("/api/v1/customers", Some(&tenant.admin_key), json!({"name": "ACME Corp"})).await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({"customerId": customer.body["id"]})).await;
    assert_eq!(app.activate(license["licenseKey"].as_str().unwrap(), "m1").await.status, StatusCode::OK);
    let received = v2.wait_until("the v2 delivery", 20, |r| !r.is_empty()).await;
    let payload = received[0].payload();
    assert_eq!(payload["event"], "license.activated", "{payload}");
    assert!(payload["timestamp"].is_string(), "{payload}");
    assert_eq!(payload["data"]["license_id"], license["number"], "{payload}");
    assert_eq!(payload["data"]["customer_id"], customer.body["number"], "{payload}");
    let activation = payload["data"]["activation_id"].as_str().unwrap();
    assert!(activation.starts_with("act_") && activation[4..].parse::<i64>().is_ok(), "{payload}");
    Receiver::verify_with_standardwebhooks(&received, &[&secret]).await;
    let native = native.wait_until("the native delivery", 20, |r| !r.is_empty()).await;
    assert_eq!(native[0].payload()["type"], "license.activated", "the other endpoint keeps keyledger's payload");
}

/// Counts rows of `sql` (which binds the endpoint's id).
async fn rows(app: &TestApp, sql: &'static str, endpoint: &str) -> i64 {
    keyledger_eventlog::on_pool!(&app.db, pool => sqlx::query_scalar::<_, i64>(sql).bind(endpoint).fetch_one(pool).await)
        .unwrap()
}

/// Every page of an endpoint's delivery log, `limit` at a time.
async fn whole_log(app: &TestApp, tenant: &TestTenant, webhook: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/api/v1/webhooks/{webhook}/deliveries?limit={limit}{query}{after}");
        let page = app.get(&path, Some(&tenant.admin_key)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let deliveries = page.body["deliveries"].as_array().unwrap().clone();
        assert!(deliveries.len() <= limit);
        all.extend(deliveries);
        match page.body["nextAfter"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return all,
        }
    }
}

/// Deliveries that succeed at once are recorded a batch to a row: the
/// healthy endpoint gets no delivery row at all, while the failing one
/// beside it gets exactly one row per failed delivery. The log lists both
/// kinds alike, page by page, newest first, each once; a delivery kept in
/// a batch is redelivered with its `webhook-id` and still listed once.
async fn a_successful_delivery_is_no_row_and_the_log_lists_every_delivery(backend: Backend) {
    const EVENTS: usize = 12;
    let app = app_with_webhooks(backend).await;
    let (healthy, failing) = (Receiver::start(Behaviour::Accept).await, Receiver::start(Behaviour::Status(500)).await);
    let tenant = app.tenant("Acme").await;
    let (ok_hook, _) = create_webhook(&app, &tenant, &healthy.url, json!(["license.activated"])).await;
    let (failing_hook, _) = create_webhook(&app, &tenant, &failing.url, json!(["license.activated"])).await;
    activations(&app, &tenant, EVENTS).await;
    let received = healthy.wait_until("every activation", 20, |r| r.len() >= EVENTS).await;
    let sent: HashSet<String> = received.iter().map(|r| r.id().to_owned()).collect();
    assert_eq!(sent.len(), EVENTS);

    let batched = "SELECT COUNT(*) FROM webhook_delivery_batches WHERE endpoint_id = $1";
    eventually("the healthy endpoint's batches to be recorded", Duration::from_secs(20), || async {
        (rows(&app, batched, &ok_hook).await > 0).then_some(())
    })
    .await;
    let own_rows = "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1";
    assert_eq!(rows(&app, own_rows, &ok_hook).await, 0, "a delivery that succeeded at once has no row of its own");
    eventually("a row for each failed delivery", Duration::from_secs(20), || async {
        (rows(&app, own_rows, &failing_hook).await == EVENTS as i64).then_some(())
    })
    .await;

    // One row a failure: its first attempt is kept in that row, not in a
    // row of `webhook_attempts` beside it, and the log shows it.
    let first_attempt_rows = "SELECT COUNT(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
                               WHERE d.endpoint_id = $1 AND a.attempt = 1";
    assert_eq!(rows(&app, first_attempt_rows, &failing_hook).await, 0);
    let failed = whole_log(&app, &tenant, &failing_hook, "", 5).await;
    assert_eq!(failed.len(), EVENTS);
    for delivery in &failed {
        assert_eq!(delivery["status"], "pending", "{delivery}");
        let first = &delivery["attempts"][0];
        assert_eq!(first["attempt"], 1, "{delivery}");
        assert_eq!(first["statusCode"], 500, "{delivery}");
        assert!(first["error"].as_str().is_some_and(|error| error.contains("500")), "{delivery}");
        assert!(first["attemptedAt"].is_string() && first["latencyMs"].is_i64(), "{delivery}");
        let numbers: Vec<i64> =
            delivery["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
        let expected: Vec<i64> = (1..=delivery["attemptCount"].as_i64().unwrap()).collect();
        assert_eq!(numbers, expected, "every attempt listed once, in order: {delivery}");
    }

    let log = eventually_result("the whole log of the healthy endpoint", Duration::from_secs(20), || async {
        let log = whole_log(&app, &tenant, &ok_hook, "", 5).await;
        if log.len() == EVENTS {
            Ok(log)
        } else {
            Err(format!("{} of {EVENTS} listed", log.len()))
        }
    })
    .await;
    let listed: HashSet<String> = log.iter().map(|d| d["webhookId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, sent, "each delivery listed once, under its webhook-id");
    let ids: HashSet<&str> = log.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), EVENTS);
    for pair in log.windows(2) {
        let key = |d: &Value| (d["createdAt"].as_str().unwrap().to_owned(), d["id"].as_str().unwrap().to_owned());
        assert!(key(&pair[0]) > key(&pair[1]), "newest first: {} then {}", pair[0], pair[1]);
    }
    for delivery in &log {
        assert_eq!(delivery["status"], "succeeded", "{delivery}");
        assert_eq!(delivery["attemptCount"], 1, "{delivery}");
        assert_eq!(delivery["attempts"][0]["statusCode"], 200, "{delivery}");
    }
    assert_eq!(whole_log(&app, &tenant, &ok_hook, "&status=succeeded", 50).await.len(), EVENTS);
    assert!(whole_log(&app, &tenant, &ok_hook, "&status=pending", 50).await.is_empty());
    assert!(whole_log(&app, &tenant, &ok_hook, "&event=license.revoked", 50).await.is_empty());

    // A batch's delivery, redelivered: sent again with its webhook-id, and
    // listed once, in its place, with both attempts.
    let chosen = &log[EVENTS / 2];
    let (id, webhook_id) = (chosen["id"].as_str().unwrap(), chosen["webhookId"].as_str().unwrap());
    let path = format!("/api/v1/webhooks/{ok_hook}/deliveries/{id}/redeliver");
    let again = app.post(&path, Some(&tenant.admin_key), json!({})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let received = healthy.wait_until("the redelivery", 20, |r| r.len() > EVENTS).await;
    assert_eq!(received[EVENTS].id(), webhook_id);
    let relisted = eventually_result("the redelivery to be recorded", Duration::from_secs(20), || async {
        let log = whole_log(&app, &tenant, &ok_hook, "", 5).await;
        let entry = log.iter().find(|d| d["id"] == id).cloned();
        match entry {
            Some(entry) if entry["attemptCount"] == 2 && entry["status"] == "succeeded" => Ok(log),
            _ => Err(format!("{entry:?}")),
        }
    })
    .await;
    assert_eq!(relisted.len(), EVENTS, "the redelivered one is listed once");
    let entry = relisted.iter().find(|d| d["id"] == id).unwrap();
    let numbers: Vec<&Value> = entry["attempts"].as_array().unwrap().iter().map(|a| &a["attempt"]).collect();
    assert_eq!(numbers, [&json!(1), &json!(2)], "the batch's attempt, then the redelivery's: {entry}");
    assert_eq!(entry["attempts"][0]["statusCode"], 200, "{entry}");
    let position = relisted.iter().position(|d| d["id"] == id);
    assert_eq!(position, Some(EVENTS / 2), "in its place");
}

/// A delivery row written before a row kept its own first attempt has
/// that attempt in `webhook_attempts`: the log lists it with the later
/// ones, and a page of such rows reads them all.
async fn a_delivery_row_from_before_first_attempts_were_kept_in_it_lists_its_attempts(backend: Backend) {
    let app = app_with_webhooks(backend).await;
    let receiver = Receiver::start(Behaviour::Accept).await;
    let tenant = app.tenant("Acme").await;
    let (webhook, _) = create_webhook(&app, &tenant, &receiver.url, json!(["license.revoked"])).await;
    // Two rows as the earlier schema wrote them, given up after their
    // attempts (so no sender takes them meanwhile).
    for (n, attempts) in [(1, 2_i64), (2, 1)] {
        let id = format!("00000000-0000-4000-8000-00000000000{n}");
        let at = format!("2026-01-0{n}T00:00:00.000000Z");
        keyledger_eventlog::on_pool!(&app.db, pool => {
            sqlx::query("INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, status, attempts, next_attempt_at, claimed_until, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, 'license.revoked', '{}', 'failed', $5, $6, NULL, $6, $6)")
                .bind(&id).bind(&webhook).bind(&tenant.id).bind(format!("event-{n}")).bind(attempts).bind(&at)
                .execute(pool).await.unwrap();
            for attempt in 1..=attempts {
                sqlx::query("INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, latency_ms, error, response_body)
                             VALUES ($1, $2, $3, 503, 7, 'the endpoint answered 503', 'busy')")
                    .bind(&id).bind(attempt).bind(&at).execute(pool).await.unwrap();
            }
        });
    }
    let log = whole_log(&app, &tenant, &webhook, "", 10).await;
    assert_eq!(log.len(), 2, "{log:?}");
    for (delivery, attempts) in log.iter().zip([1, 2]) {
        let listed = delivery["attempts"].as_array().unwrap();
        assert_eq!(listed.len(), attempts, "{delivery}");
        for (n, attempt) in listed.iter().enumerate() {
            assert_eq!(attempt["attempt"], n as i64 + 1, "{delivery}");
            assert_eq!(attempt["statusCode"], 503, "{delivery}");
            assert_eq!(attempt["error"], "the endpoint answered 503", "{delivery}");
            assert_eq!(attempt["responseBody"], "busy", "{delivery}");
        }
    }
}
