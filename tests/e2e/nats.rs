//! The NATS JetStream relay against a real nats-server: every event once,
//! in log order, through relay crashes and NATS outages.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use keyledger_eventlog::{Cursor, EventLog};
use keyledger_tests::{
    eventually, eventually_result, on_both_backends, stream_messages, Backend, NatsServer, StreamedEvent, TestApp,
};
use keyledger_workers::{Feed, NatsFeed, Relay, RelayConfig, Runtime, Spec, TailFeed, RELAY_CONSUMER, RELAY_POLL};
use reqwest::StatusCode;
use serde_json::json;

const STREAM: &str = "KEYLEDGER_EVENTS";

on_both_backends!(
    every_event_reaches_the_stream_once_in_log_order,
    a_relay_killed_again_and_again_loses_nothing_and_duplicates_nothing,
    writes_go_on_while_nats_is_down_and_the_backlog_follows,
    the_tail_feed_and_the_nats_feed_deliver_the_same_events_and_redeliver_the_unacknowledged,
);

fn relay_config(nats: &NatsServer) -> RelayConfig {
    RelayConfig { nats_url: nats.url.clone(), stream: STREAM.to_owned(), duplicate_window: Duration::from_secs(600) }
}

/// A relay of its own on the consumer runtime, beside the app's.
fn start_relay(app: &TestApp, config: &RelayConfig) -> Runtime {
    let mut runtime = Runtime::new(app.db.clone());
    let (db, config) = (app.db.clone(), config.clone());
    runtime
        .spawn(Spec::follower(RELAY_CONSUMER, RELAY_POLL).exclusive(), move || Relay::new(db.clone(), config.clone()));
    runtime
}

/// Some licenses, each generated, activated on two machines and
/// deactivated on one: four events a license, written concurrently.
async fn write_load(app: &TestApp, licenses: usize) {
    let tenant = app.tenant("Acme").await;
    let user = app.user(&tenant, "u").await;
    join_all((0..licenses).map(|_| async {
        let license = app.generate(&user.key, json!({"maxActivations": 2})).await;
        let key = license["licenseKey"].as_str().unwrap();
        assert_eq!(app.activate(key, "m1").await.status, StatusCode::OK);
        assert_eq!(app.activate(key, "m2").await.status, StatusCode::OK);
        let body = json!({"licenseKey": key, "machineId": "m1"});
        assert_eq!(app.post("/api/v1/licenses/deactivate", None, body).await.status, StatusCode::OK);
    }))
    .await;
}

/// Waits until the stream holds `expected` messages (or fails after 20 s).
async fn stream_with(nats: &NatsServer, expected: usize) -> Vec<StreamedEvent> {
    eventually_result(&format!("the stream to hold {expected} messages"), Duration::from_secs(20), || async {
        let messages = stream_messages(&nats.url, STREAM).await;
        if messages.len() >= expected {
            Ok(messages)
        } else {
            Err(format!("{} messages", messages.len()))
        }
    })
    .await
}

/// Each event of the log exactly once, each license's events in order.
async fn assert_exactly_once_in_order(app: &TestApp, messages: &[StreamedEvent]) {
    let stored: HashSet<String> = app.all_event_ids().await.into_iter().collect();
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a message was stored twice");
    assert_eq!(unique, stored.iter().map(String::as_str).collect(), "the stream and the log differ");
    let mut last: HashMap<String, i64> = HashMap::new();
    for message in messages {
        let license = message.envelope["licenseId"].as_str().unwrap().to_owned();
        let sequence = message.envelope["sequence"].as_i64().unwrap();
        let previous = last.insert(license, sequence).unwrap_or(0);
        assert_eq!(sequence, previous + 1, "a license's events out of order");
    }
}

async fn every_event_reaches_the_stream_once_in_log_order(backend: Backend) {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(backend, |config| config.nats_url = Some(nats.url.clone())).await;
    write_load(&app, 6).await;
    let messages = stream_with(&nats, 24).await;
    assert_eq!(messages.len(), 24);
    assert_exactly_once_in_order(&app, &messages).await;

    let first = &messages[0];
    let envelope = &first.envelope;
    assert_eq!(envelope["envelopeVersion"], 1);
    assert_eq!(envelope["type"], "LicenseGenerated");
    assert_eq!(first.message_id, envelope["eventId"].as_str().unwrap());
    let tenant = envelope["tenantId"].as_str().unwrap();
    assert_eq!(first.subject, format!("keyledger.events.{tenant}.LicenseGenerated"));
    assert!(envelope["data"]["license_key"].is_string());
    assert!(envelope["hash"].as_str().unwrap().len() == 64);
    assert!(messages.iter().all(|m| m.subject.ends_with(m.envelope["type"].as_str().unwrap())));
}

async fn a_relay_killed_again_and_again_loses_nothing_and_duplicates_nothing(backend: Backend) {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn(backend).await;
    let config = relay_config(&nats);

    let load = write_load(&app, 10);
    let crashes = async {
        for round in 0..12u64 {
            let relay = start_relay(&app, &config);
            // A fixed wait: the relay is killed after a different, short
            // time each round, wherever it happens to be in its work.
            tokio::time::sleep(Duration::from_millis(40 + 17 * round)).await;
            relay.abort().await;
        }
    };
    tokio::join!(load, crashes);

    let relay = start_relay(&app, &config);
    let messages = stream_with(&nats, 40).await;
    assert_exactly_once_in_order(&app, &messages).await;

    // Even a relay that lost its checkpoint entirely adds nothing: every
    // republished event carries its id and is dropped as a duplicate.
    relay.abort().await;
    EventLog::new(app.db.clone()).rewind_checkpoint(RELAY_CONSUMER, Cursor::START).await.unwrap();
    let relay = start_relay(&app, &config);
    let log = EventLog::new(app.db.clone());
    eventually("the relay to catch up again", Duration::from_secs(20), || async {
        (log.checkpoint(RELAY_CONSUMER).await.unwrap() != Cursor::START).then_some(())
    })
    .await;
    relay.abort().await;
    assert_eq!(stream_messages(&nats.url, STREAM).await.len(), 40);
}

async fn writes_go_on_while_nats_is_down_and_the_backlog_follows(backend: Backend) {
    let mut nats = NatsServer::start().await;
    let app = TestApp::spawn_with(backend, |config| config.nats_url = Some(nats.url.clone())).await;
    write_load(&app, 2).await;
    assert_eq!(stream_with(&nats, 8).await.len(), 8);

    nats.stop();
    // keyledger keeps answering while NATS is away...
    write_load(&app, 3).await;
    assert_eq!(app.all_event_ids().await.len(), 20);

    // ...and the backlog is published once NATS is back.
    nats.resume().await;
    let messages = stream_with(&nats, 20).await;
    assert_eq!(messages.len(), 20);
    assert_exactly_once_in_order(&app, &messages).await;
}

/// Reads `feed` until it has returned `count` envelopes, acknowledging
/// each batch; returns their event ids in delivery order.
async fn drain(feed: &mut impl Feed, count: usize) -> Vec<String> {
    let read = &tokio::sync::Mutex::new((feed, Vec::new()));
    eventually_result(&format!("the feed to give {count} events"), Duration::from_secs(20), || async move {
        let mut read = read.lock().await;
        let (feed, ids) = &mut *read;
        let batch = feed.next_batch(5).await.expect("a batch");
        ids.extend(batch.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()));
        feed.ack().await.expect("ack");
        if ids.len() >= count {
            Ok(std::mem::take(ids))
        } else {
            Err(format!("stalled after {} events", ids.len()))
        }
    })
    .await
}

async fn the_tail_feed_and_the_nats_feed_deliver_the_same_events_and_redeliver_the_unacknowledged(backend: Backend) {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(backend, |config| config.nats_url = Some(nats.url.clone())).await;
    write_load(&app, 3).await;
    assert_eq!(stream_with(&nats, 12).await.len(), 12);

    let log = EventLog::new(app.db.clone());
    let from_tail = drain(&mut TailFeed::new(log.clone(), "audit-exporter"), 12).await;
    let ack_wait = Duration::from_secs(1);
    let mut nats_feed = NatsFeed::open(&nats.url, STREAM, "audit-exporter", ack_wait).await.unwrap();
    let from_nats = drain(&mut nats_feed, 12).await;
    assert_eq!(from_tail, from_nats, "both feeds give the same events in the same order");
    assert_eq!(from_tail.len(), 12);

    // What a consumer took but never acknowledged comes again.
    let unacked: Vec<String> = TailFeed::new(log.clone(), "forgetful")
        .next_batch(5)
        .await
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_owned())
        .collect();
    let again: Vec<String> = TailFeed::new(log, "forgetful")
        .next_batch(5)
        .await
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unacked, again);

    let first: HashSet<String> = NatsFeed::open(&nats.url, STREAM, "forgetful", ack_wait)
        .await
        .unwrap()
        .next_batch(5)
        .await
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 5);
    // A fixed wait: the ack wait must run out on the clock for NATS to
    // hand the unacknowledged messages out again.
    tokio::time::sleep(ack_wait + Duration::from_millis(300)).await;
    let mut reopened = NatsFeed::open(&nats.url, STREAM, "forgetful", ack_wait).await.unwrap();
    let redelivered: HashSet<String> = drain(&mut reopened, 12).await.into_iter().collect();
    assert!(first.is_subset(&redelivered), "unacknowledged messages were not redelivered");
}
