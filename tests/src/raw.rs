//! HTTP over a bare socket, for what a client library won't send: stalled
//! or trickled requests, oversized heads, wrong framing.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer as read off the socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawReply {
    /// The body as JSON; panics with the answer if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer body is not JSON ({e}): {}\n{}", self.head, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// The `host:port` of a base URL such as `http://127.0.0.1:8080`.
pub fn address(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// Reads one answer: its head, then `content-length` bytes of body (or
/// up to the end of the stream without one).
pub async fn read_reply(stream: &mut TcpStream) -> std::io::Result<RawReply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before an answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut reply = RawReply { status, head, body: String::new() };
    match reply.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut body).await?;
        }
    }
    reply.body = String::from_utf8_lossy(&body).into_owned();
    Ok(reply)
}

/// Sends `request` on a new connection and reads one answer.
pub async fn exchange(base: &str, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(address(base)).await.expect("connect");
    stream.write_all(request).await.expect("send request");
    read_reply(&mut stream).await.expect("read answer")
}

/// Whether the server closes `stream` within `limit`, reading and
/// discarding anything it sends first. Returns the time it took.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}
