//! A webhook receiver on loopback for the tests: records every request it
//! gets (headers and body) and answers as it is told to.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use serde_json::{json, Value};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200.
    Accept,
    /// 500 for about half the requests, at random; 200 for the rest.
    FailHalf,
    /// Always this status.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    Busy(u64),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub fn payload(&self) -> Value {
        serde_json::from_str(&self.body).expect("a delivery's body is JSON")
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    behaviour: Mutex<Option<Behaviour>>,
    /// Deliveries being answered right now, by webhook-id.
    in_flight: Mutex<HashSet<String>>,
    /// webhook-ids that arrived while an attempt of theirs was in flight.
    overlaps: Mutex<Vec<String>>,
    /// How long each answer takes.
    delay: Mutex<Duration>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.behaviour.lock().unwrap() = Some(behaviour);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = Router::new().route("/hooks", axum::routing::post(receive)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, shared, task }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = Some(behaviour);
    }

    /// Each answer takes this long (to make overlapping attempts visible).
    pub fn answer_after(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.lock().unwrap().len()
    }

    /// Deliveries whose attempts overlapped in time.
    pub fn overlaps(&self) -> Vec<String> {
        self.shared.overlaps.lock().unwrap().clone()
    }

    /// The webhook-ids answered with a 2xx.
    pub fn accepted_ids(&self) -> HashSet<String> {
        self.received().iter().filter(|r| (200..300).contains(&r.status)).map(|r| r.id().to_owned()).collect()
    }

    /// Waits until `done` holds for what was received, at most `seconds`.
    pub async fn wait_until(&self, what: &str, seconds: u64, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        crate::eventually_result(&format!("the receiver to get {what}"), Duration::from_secs(seconds), || {
            let received = self.received();
            std::future::ready(if done(&received) {
                Ok(received)
            } else {
                Err(format!(
                    "{} requests: {:?}",
                    received.len(),
                    received.iter().map(|r| (r.headers.get("webhook-id").cloned(), r.status)).collect::<Vec<_>>()
                ))
            })
        })
        .await
    }

    /// Verifies `received` with the stock Python `standardwebhooks`
    /// package (tests/python/verify_webhooks.py), against any of `secrets`.
    pub async fn verify_with_standardwebhooks(received: &[Received], secrets: &[&str]) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        let deliveries: Vec<Value> = received.iter().map(|r| json!({"headers": r.headers, "body": r.body})).collect();
        std::fs::write(file.path(), json!({"secrets": secrets, "deliveries": deliveries}).to_string()).unwrap();
        let (ok, output) = crate::run_python("verify_webhooks.py", &[file.path().to_str().unwrap()], &[]).await;
        assert!(ok, "standardwebhooks refused a delivery: {output}");
        output
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> (StatusCode, HeaderMap) {
    let headers: HashMap<String, String> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("webhook-") || *name == "content-type" || *name == "user-agent")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    if !shared.in_flight.lock().unwrap().insert(id.clone()) {
        shared.overlaps.lock().unwrap().push(id.clone());
    }
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    shared.in_flight.lock().unwrap().remove(&id);
    let behaviour = shared.behaviour.lock().unwrap().expect("set at start");
    let mut answer = HeaderMap::new();
    let status = match behaviour {
        Behaviour::Accept => 200,
        Behaviour::FailHalf if uuid::Uuid::new_v4().as_bytes()[0] & 1 == 0 => 500,
        Behaviour::FailHalf => 200,
        Behaviour::Status(status) => status,
        Behaviour::Busy(seconds) => {
            answer.insert("retry-after", seconds.to_string().parse().unwrap());
            429
        }
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    shared.received.lock().unwrap().push(Received { headers, body, status });
    (StatusCode::from_u16(status).unwrap(), answer)
}
