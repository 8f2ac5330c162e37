//! What an adversarial probe of the server found, each held down by a
//! test: racing revocations of admin keys, stalled connections, NUL and
//! other hostile characters, bodies that are not JSON objects, and one
//! walk of every route with every class of bad input.

use std::time::Duration;

use futures::future::join_all;
use keyledger_api::{route_table, MAX_BODY_BYTES};
use keyledger_tests::raw::{address, closed_within, exchange, read_reply};
use keyledger_tests::{eventually_result, on_both_backends, Backend, Licensed, TestApp, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

on_both_backends!(
    revoking_two_admin_keys_at_once_leaves_exactly_one,
    a_nul_anywhere_is_a_4xx_naming_the_field,
    a_body_must_be_a_json_object,
    a_body_must_be_sent_as_json,
    text_shown_to_people_refuses_control_and_bidi_characters,
    string_fields_are_bounded,
    every_route_answers_bad_input_with_a_json_4xx,
);

/// Both admin keys of a tenant revoked at the same moment, each with the
/// other: one revocation wins and the other is refused, whether the two
/// requests reach one server or two servers on one database.
async fn revoking_two_admin_keys_at_once_leaves_exactly_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.another_server().await;
    let mut raced = 0;
    for trial in 0..30 {
        let tenant = app.tenant(&format!("T{trial}")).await;
        let second =
            app.post("/api/v1/api-keys", Some(&tenant.admin_key), json!({ "role": "admin", "name": "second" })).await;
        assert_eq!(second.status, StatusCode::CREATED);
        let (second_key, second_id) = (second.body["key"].as_str().unwrap(), second.body["id"].as_str().unwrap());
        let via = if trial % 2 == 0 { &app } else { &other };
        let (revoke_second, revoke_first) =
            (format!("/api/v1/api-keys/{second_id}"), format!("/api/v1/api-keys/{}", tenant.admin_key_id));
        let (a, b) = tokio::join!(
            app.request(Method::DELETE, &revoke_second, Some(&tenant.admin_key), None),
            via.request(Method::DELETE, &revoke_first, Some(second_key), None),
        );
        // One revocation wins. The other is refused as the last admin key
        // when both decide at once (409), or, when it arrives a moment
        // later, because its own key is gone by then (401).
        let won = [&a, &b].iter().filter(|r| r.status == StatusCode::NO_CONTENT).count();
        assert_eq!(won, 1, "trial {trial}: {} {} / {} {}", a.status, a.body, b.status, b.body);
        let lost = if a.status == StatusCode::NO_CONTENT { &b } else { &a };
        match lost.status {
            StatusCode::CONFLICT => {
                assert_eq!(lost.body["code"], "last_admin_key");
                raced += 1;
            }
            StatusCode::UNAUTHORIZED => {}
            other => panic!("trial {trial}: the losing revocation answered {other}: {}", lost.body),
        }
        let survivor = if a.status == StatusCode::NO_CONTENT { &tenant.admin_key } else { second_key };
        let keys = app.get("/api/v1/api-keys", Some(survivor)).await;
        assert_eq!(keys.status, StatusCode::OK, "trial {trial}: the surviving admin key still works");
        let admins = keys.body.as_array().unwrap().iter().filter(|k| k["role"] == "admin").count();
        assert_eq!(admins, 1, "trial {trial}");
    }
    assert!(raced >= 5, "only {raced} of 30 trials had both revocations decide at once; the race was not exercised");
}

async fn a_nul_anywhere_is_a_4xx_naming_the_field(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());

    // The probe's three 500s on PostgreSQL.
    for caller in [admin, OPERATOR_TOKEN] {
        let reply = app.request(Method::DELETE, "/api/v1/api-keys/%00", Some(caller), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    }
    let reply =
        app.post("/api/v1/api-keys", Some(OPERATOR_TOKEN), json!({ "role": "user", "tenantId": "a\u{0}b" })).await;
    assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("tenantId")));
    let reply = app.get("/api/v1/licenses?tenantId=%00", Some(OPERATOR_TOKEN)).await;
    assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("tenantId")));

    // Every string a body can carry, known to the route or not.
    let key = fixture.key.as_str();
    let cases = [
        ("/api/v1/licenses/activate", None, json!({ "licenseKey": key, "machineId": "m\u{0}" }), "machineId"),
        (
            "/api/v1/licenses/activate",
            None,
            json!({ "licenseKey": key, "machineId": "m", "machineName": "\u{0}" }),
            "machineName",
        ),
        ("/api/v1/licenses/validate", None, json!({ "licenseKey": "\u{0}", "machineId": "m" }), "licenseKey"),
        ("/api/v1/tenants", Some(OPERATOR_TOKEN), json!({ "name": "a\u{0}" }), "name"),
        ("/api/v1/api-keys", Some(admin), json!({ "role": "user", "name": "\u{0}" }), "name"),
        ("/api/v1/licenses/generate", Some(admin), json!({ "note": { "deep": ["ok", "\u{0}"] } }), "note.deep[1]"),
        (&format!("/api/v1/licenses/suspend/{}", fixture.id), Some(admin), json!({ "reason": "\u{0}" }), "reason"),
    ];
    for (path, caller, body, field) in cases {
        let reply = app.post(path, caller, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.body);
        assert_eq!(reply.body["field"], field, "{path}: {}", reply.body);
    }
    assert_eq!(app.count_events(&fixture.id, "LicenseActivated").await, 0);
    assert_eq!(app.count_events(&fixture.id, "LicenseSuspended").await, 0);
}

async fn a_body_must_be_a_json_object(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let activate = format!(r#"["{}", "m-arr", "name"]"#, fixture.key);
    let reply =
        app.send_raw(Method::POST, "/api/v1/licenses/activate", None, "application/json", activate.into()).await;
    assert_eq!((reply.status, reply.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_body")));
    assert_eq!((reply.body["success"].as_bool(), reply.body["code"].as_str()), (Some(false), Some("INVALID_REQUEST")));
    assert_eq!(app.count_events(&fixture.id, "LicenseActivated").await, 0);

    for body in ["[1,1,1,1]", "\"text\"", "1", "null", "true"] {
        let reply = app
            .send_raw(
                Method::POST,
                "/api/v1/licenses/generate",
                Some(&fixture.user.key),
                "application/json",
                body.into(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
    }
    let mine = app.get("/api/v1/licenses/my-licenses", Some(&fixture.user.key)).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1, "no license was made from an array");
}

async fn a_body_must_be_sent_as_json(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let body = json!({ "licenseKey": fixture.key, "machineId": "m1" }).to_string();
    for endpoint in ["activate", "validate", "heartbeat", "deactivate"] {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "", // none at all
        ] {
            let path = format!("/api/v1/fastrLicense/{endpoint}");
            let reply = app.send_raw(Method::POST, &path, None, content_type, body.clone().into()).await;
            assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{endpoint} with {content_type:?}");
            assert_eq!(reply.body["reason"], "unsupported_media_type");
        }
    }
    assert_eq!(app.count_events(&fixture.id, "LicenseActivated").await, 0);
    // JSON with parameters is JSON; no body needs no type (seed 000's revoke).
    let reply = app
        .send_raw(Method::POST, "/api/v1/licenses/activate", None, "application/json; charset=utf-8", body.into())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let revoke = format!("/api/v1/fastrLicense/revoke/{}", fixture.id);
    let reply = app.send_raw(Method::POST, &revoke, Some(&fixture.user.key), "", Vec::new()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn text_shown_to_people_refuses_control_and_bidi_characters(backend: Backend) {
    let fixture = Licensed::new(backend, json!({ "maxActivations": 3 })).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    let suspend = format!("/api/v1/licenses/suspend/{}", fixture.id);
    for hostile in ["a\u{1b}[31mred", "invoice\u{202E}fdp.exe", "\u{2066}x", "two\nlines"] {
        let cases = [
            ("/api/v1/tenants", OPERATOR_TOKEN, json!({ "name": hostile }), "name"),
            ("/api/v1/api-keys", admin, json!({ "role": "user", "name": hostile }), "name"),
            (suspend.as_str(), admin, json!({ "reason": hostile }), "reason"),
        ];
        for (path, caller, body, field) in cases {
            let reply = app.post(path, Some(caller), body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {hostile:?}: {}", reply.body);
            assert_eq!(reply.body["field"], field);
        }
        let activate = json!({ "licenseKey": fixture.key, "machineId": "m1", "machineName": hostile });
        let reply = app.post("/api/v1/licenses/activate", None, activate).await;
        assert_eq!((reply.status, reply.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("machineName")));
    }
    assert_eq!(app.count_events(&fixture.id, "LicenseSuspended").await, 0);
    assert_eq!(app.count_events(&fixture.id, "LicenseActivated").await, 0);
    // Other scripts are text like any other.
    let activate = json!({ "licenseKey": fixture.key, "machineId": "m1", "machineName": "שרת-ראשי 東京" });
    assert_eq!(app.post("/api/v1/licenses/activate", None, activate).await.status, StatusCode::OK);
}

/// Every string field a body takes has a bound, and a value over it is a
/// 400 naming the field, never a 5xx or a stored megabyte.
async fn string_fields_are_bounded(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    let long = "x".repeat(20_000);
    let suspend = format!("/api/v1/licenses/suspend/{}", fixture.id);
    let cases = [
        ("/api/v1/licenses/activate", None, json!({ "licenseKey": long, "machineId": "m" }), "licenseKey"),
        ("/api/v1/licenses/activate", None, json!({ "licenseKey": fixture.key, "machineId": long }), "machineId"),
        (
            "/api/v1/licenses/activate",
            None,
            json!({ "licenseKey": fixture.key, "machineId": "m", "machineName": long }),
            "machineName",
        ),
        ("/api/v1/tenants", Some(OPERATOR_TOKEN), json!({ "name": long }), "name"),
        ("/api/v1/api-keys", Some(admin), json!({ "role": long }), "role"),
        ("/api/v1/api-keys", Some(admin), json!({ "role": "user", "name": long }), "name"),
        ("/api/v1/api-keys", Some(OPERATOR_TOKEN), json!({ "role": "user", "tenantId": long }), "tenantId"),
        (suspend.as_str(), Some(admin), json!({ "reason": long }), "reason"),
    ];
    for (path, caller, body, field) in cases {
        let reply = app.post(path, caller, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {field}: {}", reply.body);
        assert_eq!(reply.body["field"], field, "{path}: {}", reply.body);
    }
}

/// Fills a route template's parameters: the fixture's real values, so that
/// a probe of the body or query reaches as far into the route as it can.
fn concrete(path: &str, fixture: &Licensed) -> String {
    path.replace("{license_id}", &fixture.id)
        .replace("{license_key}", &fixture.key)
        .replace("{key_id}", &fixture.user.id)
        .replace("{tenant_id}", &fixture.tenant.id)
        .replace("{kid}", &"k".repeat(43))
        .replace("{account}", &fixture.tenant.id)
        .replace("{id}", &fixture.id)
}

/// Every route the router serves (its own table, so a new route can't be
/// missed), with every caller and every class of bad input the probe used.
async fn every_route_answers_bad_input_with_a_json_4xx(backend: Backend) {
    let fixture = Licensed::new(backend, json!({})).await;
    let app = &fixture.app;
    let callers =
        [None, Some(OPERATOR_TOKEN), Some(fixture.tenant.admin_key.as_str()), Some(fixture.user.key.as_str())];
    let routes = route_table();
    assert!(routes.len() >= 30, "the table lists the routes under both prefixes: {}", routes.len());
    let big_body = format!("{{\"name\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let probes = ["%00", "%1B%5B31m", "%E2%80%AE", "%0A", &"A".repeat(5000), "..%2F..%2Fetc", "%FF"];
    let mut checked = 0;
    for route in &routes {
        for caller in callers {
            let path = concrete(&route.path, &fixture);
            let mut expect = |reply: keyledger_tests::Reply, wanted: Option<StatusCode>, what: &str| {
                let context = format!(
                    "{} {} as {caller:?} with {what}: {} {}",
                    route.method, route.path, reply.status, reply.body
                );
                assert!(reply.status.is_client_error(), "{context}");
                assert!(reply.body.is_object(), "not a JSON error: {context}");
                // Each dialect's own error shape (README, "Other client
                // dialects"); seed 001 answers bad input with 422.
                let coded = reply.body["code"].is_string()
                    || reply.body["error"]["code"].is_string()
                    || reply.body["errors"][0]["code"].is_string()
                    || reply.body["statusCode"].is_number();
                assert!(coded, "no code: {context}");
                if let Some(wanted) = wanted {
                    let seed001 = route.path.starts_with("/license/");
                    let wanted = if seed001 && wanted == StatusCode::BAD_REQUEST {
                        StatusCode::UNPROCESSABLE_ENTITY
                    } else {
                        wanted
                    };
                    assert_eq!(reply.status, wanted, "{context}");
                }
                checked += 1;
            };
            // Hostile path parameters.
            if route.path.contains('{') {
                for probe in probes {
                    let hostile = route
                        .path
                        .split('/')
                        .map(|segment| if segment.starts_with('{') { probe } else { segment })
                        .collect::<Vec<_>>()
                        .join("/");
                    let reply = app.send_raw(route.method.clone(), &hostile, caller, "", Vec::new()).await;
                    expect(reply, None, &format!("path parameter {probe:.20}"));
                }
            }
            // Repeated and hostile query parameters, on every route alike.
            let reply =
                app.send_raw(route.method.clone(), &format!("{path}?limit=1&limit=2"), caller, "", Vec::new()).await;
            expect(reply, Some(StatusCode::BAD_REQUEST), "a repeated parameter");
            let reply = app
                .send_raw(route.method.clone(), &format!("{path}?tenantId=%00&at=%E2%80%AE"), caller, "", Vec::new())
                .await;
            expect(reply, Some(StatusCode::BAD_REQUEST), "NUL in the query");
            // Bodies: wrong type, not an object, NUL, control and bidi
            // characters in fields the route may read, and too big.
            let send = |content_type: &'static str, body: Vec<u8>| {
                app.send_raw(route.method.clone(), &path, caller, content_type, body)
            };
            expect(send("text/plain", b"{}".to_vec()).await, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), "text/plain");
            expect(
                send("application/x-www-form-urlencoded", b"a=b".to_vec()).await,
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "a form",
            );
            expect(send("application/json", b"[1,2,3]".to_vec()).await, Some(StatusCode::BAD_REQUEST), "an array");
            expect(send("application/json", b"\"s\"".to_vec()).await, Some(StatusCode::BAD_REQUEST), "a string");
            expect(
                send("application/json", b"{\"licenseKey\":".to_vec()).await,
                Some(StatusCode::BAD_REQUEST),
                "broken JSON",
            );
            for field in ["licenseKey", "machineId", "machineName", "name", "reason", "role", "tenantId"] {
                let body = json!({ field: "a\u{0}b" }).to_string().into_bytes();
                expect(send("application/json", body).await, Some(StatusCode::BAD_REQUEST), &format!("NUL in {field}"));
            }
            expect(
                send("application/json", big_body.clone().into_bytes()).await,
                Some(StatusCode::PAYLOAD_TOO_LARGE),
                "a body over the limit",
            );
        }
    }
    assert!(checked > 1000, "{checked} answers checked");
    assert_eq!(app.raw_events(&fixture.id).await.len(), 1, "no probe changed the license");

    // Hostile text in a well-formed body: refused by the routes that read
    // the field, ignored by those that don't (which may then act: the
    // probe runs last), and never a 5xx either way.
    let long = "x".repeat(10_000);
    for route in &routes {
        for caller in callers {
            let path = concrete(&route.path, &fixture);
            for field in ["machineName", "name", "reason"] {
                for hostile in ["a\u{1b}[31m", "a\u{202E}b", long.as_str()] {
                    let body = json!({ field: hostile }).to_string().into_bytes();
                    let mut request = app.client.request(route.method.clone(), format!("{}{path}", app.base));
                    request = request.header("content-type", "application/json").body(body);
                    if let Some(key) = caller {
                        request = request.bearer_auth(key);
                    }
                    let reply = request.send().await.unwrap();
                    let (status, text) = (reply.status(), reply.text().await.unwrap());
                    assert!(!status.is_server_error(), "{} {} {field}: {text}", route.method, route.path);
                    // Errors are JSON; a few successes are not (metrics, the docs page).
                    assert!(status.is_success() || serde_json::from_str::<Value>(&text).is_ok(), "{text}");
                }
            }
        }
    }
}

// --- the connection level: one backend is enough, no store is involved ---

/// A server whose deadlines are short enough to watch.
async fn quick_server() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |config| {
        config.header_read_timeout_secs = 1;
        config.body_read_timeout_secs = 1;
        config.keep_alive_timeout_secs = 2;
        config.max_connections_per_ip = 300;
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(address(&app.base)).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed() {
    let app = quick_server().await;
    // Silent sockets, and heads trickled a byte at a time.
    let silent = join_all((0..100).map(|_| connect(&app))).await;
    let trickled = join_all((0..100).map(|_| connect(&app))).await;
    let trickling: Vec<_> = trickled
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle().take(60) {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    // A fixed pace: a byte every 100 ms is the slow client
                    // the header deadline must cut off.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                closed_within(&mut stream, Duration::from_secs(10)).await
            })
        })
        .collect();
    // The server keeps answering while they hang.
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    for mut stream in silent {
        let took = closed_within(&mut stream, Duration::from_secs(5)).await;
        assert!(took.is_some(), "a silent connection was left open");
    }
    for trickle in trickling {
        let took = trickle.await.unwrap();
        assert!(took.is_some(), "a trickled head was not cut off");
    }

    // A body announced and never sent: 408, then closed.
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /api/v1/licenses/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let reply = read_reply(&mut stream).await.expect("an answer to the stalled body");
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert_eq!(reply.json()["reason"], "body_timeout");
    assert_eq!(reply.json()["isValid"], false, "in validate's shape");
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await.is_some());

    // A kept-alive connection that goes quiet after an answer.
    let mut stream = connect(&app).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_reply(&mut stream).await.unwrap().status, 200);
    let took = closed_within(&mut stream, Duration::from_secs(6)).await.expect("an idle connection was left open");
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}, before the keep-alive timeout");
    // The same from a plain blocking socket, whose reads hyper meets
    // differently: the deadline must not depend on hyper polling the socket.
    let (host, port) = address(&app.base).rsplit_once(':').unwrap();
    let (ok, printed) = keyledger_tests::run_python("idle_client.py", &[host, port, "6"], &[]).await;
    assert!(ok, "{printed}");
    let seconds: f64 =
        printed.trim().parse().unwrap_or_else(|_| panic!("the idle connection was left open: {printed}"));
    assert!((1.5..=4.0).contains(&seconds), "closed after {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.max_connections_per_ip = 5).await;
    let held = join_all((0..5).map(|_| connect(&app))).await;
    let mut over = connect(&app).await;
    let reply = read_reply(&mut over).await.expect("an answer to the connection over the cap");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["code"], "too_many_connections");

    // Another address is not affected.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut elsewhere = socket.connect(address(&app.base).parse().unwrap()).await.unwrap();
    elsewhere.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_reply(&mut elsewhere).await.unwrap().status, 200);

    // Places come back when connections close.
    drop(held);
    eventually_result("the address to get its places back", Duration::from_secs(2), || async {
        let answer = exchange(&app.base, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(format!("{}: {}", answer.status, answer.body))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_json_even_those_made_below_the_router() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let reply = exchange(&app.base, long.as_bytes()).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (414, Some("uri_too_long")));
    let reply =
        exchange(&app.base, format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000)).as_bytes()).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (414, Some("uri_too_long")));
    let reply = exchange(&app.base, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_authorization_header_is_named_as_such() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for value in ["Bearer\tkey", "Basic dXNlcjpwYXNz", "Bearer a b", "Token x"] {
        let reply = app
            .client
            .get(format!("{}/api/v1/api-keys", app.base))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["code"], "malformed_authorization", "{value:?}");
    }
    let reply = app.get("/api/v1/api-keys", None).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_and_trailing_slashes_behave_alike_everywhere() {
    let fixture = Licensed::new(Backend::Sqlite, json!({})).await;
    let (app, admin) = (&fixture.app, fixture.tenant.admin_key.as_str());
    for path in [
        "/api/v1/licenses?limit=1&limit=2".to_owned(),
        format!("/api/v1/licenses/{}/events?after=0&after=1", fixture.id),
    ] {
        let reply = app.get(&path, Some(admin)).await;
        assert_eq!(
            (reply.status, reply.body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("repeated_parameter")),
            "{path}"
        );
    }
    for (with_slash, without) in [("/api/v1/licenses/", "/api/v1/licenses"), ("/health/", "/health")] {
        let (a, b) = (app.get(with_slash, Some(admin)).await, app.get(without, Some(admin)).await);
        assert_eq!(a.status, StatusCode::OK, "{with_slash}: {}", a.body);
        assert_eq!(a.status, b.status);
    }
}

/// The OpenAPI document and the router are built from the same
/// registrations; this holds them to it: every route served is described,
/// and nothing is described that isn't served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_document_describes_every_route_and_only_those() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let document = app.get("/openapi.json", None).await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.body["openapi"], "3.1.0");
    let mut described = Vec::new();
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in document.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            described.push(format!("{} {path}", method.to_uppercase()));
            assert!(operation_ids.insert(operation["operationId"].as_str().unwrap().to_owned()), "{method} {path}");
            assert!(operation["responses"]["default"].is_object(), "{method} {path} documents its errors");
        }
    }
    let mut served: Vec<String> = route_table().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    described.sort();
    served.sort();
    assert_eq!(described, served);
    let schemes = &document.body["components"]["securitySchemes"];
    assert!(schemes["bearer"].is_object() && schemes["apiKey"].is_object());
    let page = app.client.get(format!("{}/docs", app.base)).send().await.unwrap();
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = page.text().await.unwrap();
    assert!(
        page.contains("/api/v1/licenses/activate") && !page.contains("<script src"),
        "a page with no outside assets"
    );
}
