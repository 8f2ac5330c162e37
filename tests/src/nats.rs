//! Private nats-server instances for the tests that stop and start NATS,
//! and a reader of what a JetStream stream holds.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

/// A nats-server with JetStream on a free loopback port and its own store,
/// stopped when dropped. The binary is `KEYLEDGER_TEST_NATS_SERVER`, else
/// `nats-server` on the PATH, else Debian's `/usr/sbin/nats-server`.
pub struct NatsServer {
    pub url: String,
    port: u16,
    store: TempDir,
    child: Option<Child>,
}

fn binary() -> String {
    if let Ok(path) = std::env::var("KEYLEDGER_TEST_NATS_SERVER") {
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("nats-server").is_file()))
        .unwrap_or(false);
    if on_path {
        "nats-server".to_owned()
    } else {
        "/usr/sbin/nats-server".to_owned()
    }
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let store = tempfile::tempdir().expect("temp dir");
        let mut server = Self { url: format!("nats://127.0.0.1:{port}"), port, store, child: None };
        server.resume().await;
        server
    }

    /// Stops the server at once, as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub async fn resume(&mut self) {
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server ({e}); run the suite with scripts/test"));
        self.child = Some(child);
        let port = self.port;
        crate::eventually(&format!("nats-server to listen on port {port}"), Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message of a stream: subject, `Nats-Msg-Id`, and the JSON envelope.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    pub subject: String,
    pub message_id: String,
    pub envelope: Value,
}

/// Every message `stream` holds, in stream order; empty if the stream does
/// not exist yet.
pub async fn stream_messages(url: &str, stream: &str) -> Vec<StreamedEvent> {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(client);
    let Ok(mut stream) = jetstream.get_stream(stream).await else { return Vec::new() };
    let last = stream.info().await.expect("stream info").state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.expect("stream message");
        let message_id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
        messages.push(StreamedEvent {
            subject: message.subject.to_string(),
            message_id,
            envelope: serde_json::from_slice(&message.payload).expect("a JSON envelope"),
        });
    }
    messages
}
