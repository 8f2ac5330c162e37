//! Rate limits, progressive address blocks shared by every process, client
//! addresses behind trusted proxies, bounded limiter state, and the
//! metrics a Prometheus scraper reads.

use std::time::Duration;

use futures::future::join_all;
use keyledger_api::Config;
use keyledger_tests::{eventually, on_both_backends, run_python, Backend, Licensed, TestApp, OPERATOR_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    answers_carry_rate_limit_headers_and_a_429_says_when_to_retry,
    a_guessing_address_is_blocked_for_longer_each_time_in_every_process,
    only_failed_guesses_earn_a_block_and_it_covers_what_it_was_earned_on,
    a_seed_002_route_block_holds_in_every_process,
    metrics_parse_with_a_real_prometheus_parser,
);

fn limited(config: &mut Config) {
    config.rate_limits = "on".to_owned();
    config.trusted_proxies = "127.0.0.1".to_owned();
}

/// Sends `body` to a client endpoint as if from `address` (through the
/// trusted proxy at 127.0.0.1).
async fn from(app: &TestApp, address: &str, endpoint: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/licenses/{endpoint}", app.base))
        .header("x-forwarded-for", address)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
}

async fn answers_carry_rate_limit_headers_and_a_429_says_when_to_retry(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        limited(config);
        config.rate_limit_client_per_minute = 5;
    })
    .await;
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    let license = app.generate(&user.key, json!({})).await;
    let key = license["licenseKey"].as_str().unwrap();
    let body = json!({ "licenseKey": key, "machineId": "m1" });
    let now = chrono::Utc::now().timestamp();
    for expected_remaining in (0..5).rev() {
        let response = from(&app, "198.51.100.1", "validate", body.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit"), "5");
        assert_eq!(header(&response, "x-ratelimit-remaining"), expected_remaining.to_string());
        let reset: i64 = header(&response, "x-ratelimit-reset").parse().unwrap();
        assert!(reset >= now && reset <= now + 61, "reset {reset} is a Unix time within the minute");
    }
    let refused = from(&app, "198.51.100.1", "validate", body.clone()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    let refused: Value = refused.json().await.unwrap();
    // In validate's own shape, as seed 000's clients read every answer.
    assert_eq!((refused["isValid"].as_bool(), refused["code"].as_str()), (Some(false), Some("RATE_LIMITED")));
    assert_eq!(refused["reason"], "rate_limited");
    // Other addresses, and the management class, have their own budgets.
    assert_eq!(from(&app, "198.51.100.2", "validate", body.clone()).await.status(), StatusCode::OK);
    let keys = app.get("/api/v1/api-keys", Some(&tenant.admin_key)).await;
    assert_eq!(keys.status, StatusCode::OK);
}

async fn a_guessing_address_is_blocked_for_longer_each_time_in_every_process(backend: Backend) {
    let settings = |config: &mut Config| {
        limited(config);
        config.rate_limit_block_after = 3;
        config.rate_limit_block_base_secs = 2;
        config.rate_limit_block_max_secs = 60;
        config.rate_limit_block_decay_secs = 3;
    };
    let app = TestApp::spawn_with(backend, settings).await;
    let other = app.another_server_with(settings).await;
    let guess = json!({ "licenseKey": "ABCD-EFGH-JKMN-PQRS", "machineId": "m" });
    let guesser = "203.0.113.7";

    let mut lengths = Vec::new();
    for round in 0..4 {
        if round == 3 {
            // A quiet spell longer than the decay: the next block is short
            // again. A fixed wait: the quiet spell is the behaviour tested.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        // Guess on the first process until it blocks the address.
        let mut blocked = None;
        for _ in 0..10 {
            let response = from(&app, guesser, "validate", guess.clone()).await;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                blocked = Some(header(&response, "retry-after").parse::<u64>().unwrap());
                let body: Value = response.json().await.unwrap();
                assert_eq!((body["code"].as_str(), body["reason"].as_str()), (Some("RATE_LIMITED"), Some("blocked")));
                break;
            }
        }
        let length = blocked.unwrap_or_else(|| panic!("round {round}: the guesser was never blocked"));
        lengths.push(length);
        // The second process holds the block within about a second.
        eventually(&format!("round {round}: the other process to see the block"), Duration::from_secs(5), || async {
            let status = from(&other, guesser, "validate", guess.clone()).await.status();
            (status == StatusCode::TOO_MANY_REQUESTS).then_some(())
        })
        .await;
        // Someone else is not affected.
        assert_ne!(
            from(&other, "203.0.113.8", "validate", guess.clone()).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // A fixed wait: the block runs out on the clock, and the next
        // round's length depends on when it ended.
        tokio::time::sleep(Duration::from_secs(length) + Duration::from_millis(300)).await;
    }
    assert!(lengths[0] <= 2 && lengths[1] > lengths[0] && lengths[2] > lengths[1], "each block doubles: {lengths:?}");
    assert_eq!((lengths[1], lengths[2]), (4, 8), "{lengths:?}");
    assert!(lengths[3] <= 2, "after a quiet spell the block is the base length again: {lengths:?}");
}

/// Seed 002's validate, as if from `address`.
async fn seed002_validate(app: &TestApp, address: &str) -> reqwest::Response {
    let body = json!({ "license_key": "ABCD-EFGH-JKMN-PQRS", "device_id": "d" });
    app.client
        .post(format!("{}/api/licenses/validate", app.base))
        .header("x-forwarded-for", address)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn a_seed_002_route_block_holds_in_every_process(backend: Backend) {
    let settings = |config: &mut Config| {
        limited(config);
        // Guessing blocks out of the way: this is the route's own block.
        config.rate_limit_block_after = 1_000;
    };
    let app = TestApp::spawn_with(backend, settings).await;
    let other = app.another_server_with(settings).await;
    let caller = "203.0.113.20";
    // The document's budget, 5 a minute; the sixth call is blocked for 2 minutes.
    for _ in 0..5 {
        assert_eq!(seed002_validate(&app, caller).await.status(), StatusCode::BAD_REQUEST);
    }
    let blocked = seed002_validate(&app, caller).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&blocked, "retry-after"), "120");
    // The other process, whose own budget is untouched (a call or two
    // would be within it), holds the block within about a second: the
    // same block, a few seconds shorter, not one of its own. A fixed wait,
    // not a poll: polling would spend the other process's own budget (a
    // block of its own would also answer 429), and the block must have
    // aged by a couple of seconds for its Retry-After to tell it apart
    // from a fresh one.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let response = seed002_validate(&other, caller).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "the other process never saw the block");
    let left: u64 = header(&response, "retry-after").parse().unwrap();
    assert!((100..=118).contains(&left), "the same block, not a new one: {left} s left");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 429, "in seed 002's shape: {body}");
    // Another address is not affected.
    assert_eq!(seed002_validate(&other, "203.0.113.21").await.status(), StatusCode::BAD_REQUEST);
}

async fn metrics_parse_with_a_real_prometheus_parser(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    app.activate(&fixture.key, "m1").await;
    app.validate(&fixture.key, "m1").await;
    app.validate("ABCD-EFGH-JKMN-PQRS", "m1").await;
    let (ok, printed) = run_python("parse_metrics.py", &[&format!("{}/metrics", app.base)], &[]).await;
    assert!(ok, "{printed}");
    let samples: Vec<Value> = printed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |name: &str, labels: Value| {
        samples.iter().find(|s| s[0] == name && labels.as_object().unwrap().iter().all(|(k, v)| s[1][k] == *v))
    };
    let validate = find(
        "keyledger_http_requests_total",
        json!({ "route": "/api/v1/fastrLicense/validate", "method": "POST", "status": "200" }),
    );
    assert_eq!(validate.map(|s| s[2].as_f64().unwrap()), Some(2.0), "{printed}");
    assert!(find(
        "keyledger_http_request_duration_seconds_bucket",
        json!({ "route": "/api/v1/fastrLicense/validate" })
    )
    .is_some());
    assert!(find("keyledger_commands_total", json!({ "command": "ActivateLicense", "outcome": "ok" })).is_some());
    assert!(find("keyledger_events_appended_total", json!({ "type": "LicenseActivated" })).is_some());
    for consumer in ["validation_view_follower", "projection:license_view"] {
        assert!(find("keyledger_consumer_lag_events", json!({ "consumer": consumer })).is_some(), "{consumer}");
        assert!(find("keyledger_consumer_lag_seconds", json!({ "consumer": consumer })).is_some(), "{consumer}");
    }
    assert_eq!(find("keyledger_validation_view_licenses", json!({})).map(|s| s[2].as_f64().unwrap()), Some(1.0));
    assert!(find("keyledger_db_pool_connections", json!({ "state": "max" })).is_some());
    assert!(find("keyledger_rate_limit_active_blocks", json!({})).is_some());
    // No raw path, key or machine id reaches a label.
    assert!(!printed.contains(&fixture.key) && !printed.contains("m1\""), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_closed_behind_a_token() {
    let app =
        TestApp::spawn_with(Backend::Sqlite, |config| config.metrics_token = Some("scrape-secret".to_owned())).await;
    assert_eq!(app.get("/metrics", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/metrics", Some(OPERATOR_TOKEN)).await.status, StatusCode::UNAUTHORIZED);
    let (ok, printed) = run_python("parse_metrics.py", &[&format!("{}/metrics", app.base), "scrape-secret"], &[]).await;
    assert!(ok, "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_address_counts_only_from_a_trusted_proxy() {
    for (trusted, expected) in [("", "127.0.0.1"), ("127.0.0.1", "192.0.2.44")] {
        let app = TestApp::spawn_with(Backend::Sqlite, |config| config.trusted_proxies = trusted.to_owned()).await;
        let tenant = app.tenant("Acme").await;
        let user = app.user(&tenant, "u").await;
        let license = app.generate(&user.key, json!({})).await;
        let response =
            from(&app, "192.0.2.44", "activate", json!({ "licenseKey": license["licenseKey"], "machineId": "m1" }))
                .await;
        assert_eq!(response.status(), StatusCode::OK);
        let events = app.raw_events(license["id"].as_str().unwrap()).await;
        let metadata: Value = serde_json::from_str(&events[1].2).unwrap();
        assert_eq!(metadata["client_ip"], expected, "trusted proxies {trusted:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_a_hundred_thousand_addresses_stays_in_bounded_memory() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        limited(config);
        config.rate_limit_max_tracked = 5_000;
    })
    .await;
    let client = reqwest::Client::new();
    let sent = std::sync::atomic::AtomicU32::new(0);
    let started = std::time::Instant::now();
    // The flood calls the service status (`/`), a public endpoint that,
    // unlike `/health`, asks the store nothing, so the flood is quick.
    let workers = (0..32u32).map(|worker| {
        let (client, base, sent) = (client.clone(), app.base.clone(), &sent);
        async move {
            for i in (worker..100_000).step_by(32) {
                let address = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
                let response = client.get(format!("{base}/")).header("x-forwarded-for", address).send().await.unwrap();
                assert!(response.status().is_success() || response.status() == StatusCode::TOO_MANY_REQUESTS);
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    join_all(workers).await;
    let flood_took = started.elapsed();
    assert_eq!(sent.into_inner(), 100_000);
    // The table is full of the flood's callers, yet a new client is served
    // from a full budget of its own.
    let newcomer =
        client.get(format!("{}/health", app.base)).header("x-forwarded-for", "192.0.2.200").send().await.unwrap();
    assert_eq!(newcomer.status(), StatusCode::OK);
    let (limit, remaining) = (header(&newcomer, "x-ratelimit-limit"), header(&newcomer, "x-ratelimit-remaining"));
    assert_eq!(remaining.parse::<u32>().unwrap() + 1, limit.parse::<u32>().unwrap(), "a full budget");
    let (ok, printed) = run_python("parse_metrics.py", &[&format!("{}/metrics", app.base)], &[]).await;
    assert!(ok, "{printed}");
    let tracked = printed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s[0] == "keyledger_rate_limit_tracked_callers")
        .map(|s| s[2].as_f64().unwrap())
        .expect("the tracked-callers gauge");
    // Each limit and the failure counts hold at most the cap: the public
    // limit and the failures (every 429 counts as one) are what fill here.
    assert!(tracked <= 4.0 * 5_000.0, "{tracked} callers tracked for a cap of 5000 per table");
    assert!(tracked >= 1_000.0, "the flood was tracked at all: {tracked}");
    let evicted = printed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|s| s[0] == "keyledger_rate_limit_evicted_callers")
        .map(|s| s[2].as_f64().unwrap())
        .expect("the evicted-callers gauge");
    // A caller leaves the table either evicted to make room or swept once
    // its bucket has refilled, a minute after its last call. In a flood
    // that takes under a minute nothing has refilled, so all but the cap
    // were evicted; on a machine so loaded that the flood stalled past a
    // minute, the table's callers at the stall were swept instead.
    if flood_took < Duration::from_secs(60) {
        assert!(evicted >= 90_000.0, "{evicted} callers evicted to make room in {flood_took:?}");
    } else {
        assert!(evicted >= 50_000.0, "{evicted} callers evicted to make room in {flood_took:?}");
    }
}

/// Valid calls over the budget are slowed, never blocked; a block earned
/// by guessing answers the client endpoints and keyless management calls,
/// while `/health` and a management call with a valid key stay open.
async fn only_failed_guesses_earn_a_block_and_it_covers_what_it_was_earned_on(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = fixture
        .app
        .another_server_with(|config: &mut Config| {
            limited(config);
            config.rate_limit_client_per_minute = 5;
            config.rate_limit_block_after = 3;
            config.rate_limit_block_base_secs = 60;
        })
        .await;
    let activated =
        from(&app, "198.51.100.30", "activate", json!({ "licenseKey": fixture.key, "machineId": "m" })).await;
    assert_eq!(activated.status(), StatusCode::OK);
    // A busy but honest client: over its budget, answered rate_limited, never blocked.
    let mut limited_answers = 0;
    for _ in 0..30 {
        let response =
            from(&app, "198.51.100.30", "validate", json!({ "licenseKey": fixture.key, "machineId": "m" })).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["reason"], "rate_limited", "429s are not failures: {body}");
            limited_answers += 1;
        }
    }
    assert!(limited_answers > 20, "the budget of 5 held: {limited_answers} limited");

    // A guesser earns a block.
    let guesser = "203.0.113.40";
    let guess = json!({ "licenseKey": "ABCD-EFGH-JKMN-PQRS", "machineId": "m" });
    let mut blocked = false;
    for _ in 0..5 {
        let response = from(&app, guesser, "validate", guess.clone()).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["reason"], "blocked", "{body}");
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the guesser was blocked");
    let get = |path: &str, key: Option<&str>| {
        let mut request = app.client.get(format!("{}{path}", app.base)).header("x-forwarded-for", guesser);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(get("/health", None).await.unwrap().status(), StatusCode::OK, "the probe stays open");
    let staff = get("/api/v1/api-keys", Some(&fixture.tenant.admin_key)).await.unwrap();
    assert_eq!(staff.status(), StatusCode::OK, "a management call with a valid key stays open");
    let keyless = get("/api/v1/api-keys", Some("klk_nope_nothing")).await.unwrap();
    assert_eq!(keyless.status(), StatusCode::TOO_MANY_REQUESTS, "a wrong key from a blocked address is blocked");
    let still = from(&app, guesser, "validate", json!({ "licenseKey": fixture.key, "machineId": "m" })).await;
    assert_eq!(still.status(), StatusCode::TOO_MANY_REQUESTS, "the client endpoints stay blocked");
}
