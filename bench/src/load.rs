//! The load generator: a fixed number of connections, each sending its
//! next request as soon as the last one is answered, for a fixed time.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What one request came to: answered as expected, or not.
pub type Outcome = Result<(), String>;

/// Figures of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first error seen, to say what went wrong.
    pub first_error: Option<String>,
}

/// Runs `request(connection, n)` on `connections` concurrent loops for
/// `duration` (or until a loop's `request` returns None: its work ran out).
pub async fn run<F, Fut>(name: &str, connections: usize, duration: Duration, request: F) -> Report
where
    F: Fn(usize, u64) -> Option<Fut> + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..connections).map(|connection| {
        let request = request.clone();
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0;
            while Instant::now() < deadline {
                let Some(call) = request(connection, n) else { break };
                let sent = Instant::now();
                tally.record(sent, call.await);
                n += 1;
            }
            tally.into_result()
        })
    });
    finish(name, connections, started, futures::future::join_all(loops).await)
}

/// What one loop measured: latencies in microseconds, errors, the first error.
type LoopResult = (Vec<u32>, u64, Option<String>);

/// One loop's running record of its requests.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Records a request sent at `sent` that has just come to `outcome`.
    fn record(&mut self, sent: Instant, outcome: Outcome) {
        self.latencies.push(sent.elapsed().as_micros() as u32);
        if let Err(error) = outcome {
            self.errors += 1;
            self.first_error.get_or_insert(error);
        }
    }

    fn into_result(self) -> LoopResult {
        (self.latencies, self.errors, self.first_error)
    }
}

/// The report of a run from its loops' results.
fn finish(
    name: &str,
    connections: usize,
    started: Instant,
    results: Vec<Result<LoopResult, tokio::task::JoinError>>,
) -> Report {
    let elapsed = started.elapsed().as_secs_f64();
    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
    for (loop_latencies, loop_errors, loop_error) in results.into_iter().flatten() {
        latencies.extend(loop_latencies);
        errors += loop_errors;
        first_error = first_error.or(loop_error);
    }
    report(name, connections, elapsed, latencies, errors, first_error)
}

/// The figures of a run from its requests' latencies in microseconds.
pub fn report(
    name: &str,
    connections: usize,
    elapsed: f64,
    mut latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
) -> Report {
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[index]) / 1000.0
    };
    Report {
        name: name.to_owned(),
        connections,
        seconds: elapsed,
        requests: latencies.len() as u64,
        errors,
        throughput: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p90_ms: percentile(0.90),
        p99_ms: percentile(0.99),
        max_ms: latencies.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
        first_error,
    }
}

/// One kept-alive HTTP/1.1 connection speaking just enough of the protocol
/// for the load: a request is written from bytes made up front, and an
/// answer is read by its `content-length`. It costs the generator far less
/// than a general client, so the server, not the generator, sets the pace.
pub struct Connection {
    addr: std::net::SocketAddr,
    stream: Option<tokio::net::TcpStream>,
    buffer: Vec<u8>,
    /// Header lines sent with every request (each ending in `\r\n`).
    headers: String,
}

impl Connection {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self { addr, stream: None, buffer: Vec::with_capacity(16 * 1024), headers: String::new() }
    }

    /// Sends `Authorization: Bearer <key>` with every request.
    pub fn with_bearer(mut self, key: &str) -> Self {
        self.headers = format!("authorization: Bearer {key}\r\n");
        self
    }

    /// POSTs `body` as JSON to `path`; returns the status and the body.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, &[u8]), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            self.addr,
            body.len(),
            self.headers
        )
        .into_bytes();
        request.extend_from_slice(body);
        if self.stream.is_none() {
            let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        if let Err(error) = stream.write_all(&request).await {
            self.stream = None;
            return Err(error.to_string());
        }
        self.buffer.clear();
        let mut chunk = [0u8; 8192];
        let (head_end, status, length) = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end]).map_err(|e| e.to_string())?;
                let status = head.get(9..12).and_then(|s| s.parse::<u16>().ok()).ok_or("no status")?;
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
                    })
                    .ok_or("an answer without content-length")?;
                break (end + 4, status, length);
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                self.stream = None;
                return Err("the server closed the connection".to_owned());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        };
        while self.buffer.len() < head_end + length {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                self.stream = None;
                return Err("the server closed the connection mid-answer".to_owned());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        Ok((status, &self.buffer[head_end..head_end + length]))
    }
}

/// What to send and what the answer must contain.
pub struct Call {
    pub path: String,
    pub body: Vec<u8>,
    /// Bytes a correct answer holds, e.g. `"isValid":true`.
    pub expect: &'static [u8],
}

/// Like [`run`], with each loop on its own [`Connection`] to `addr`.
pub async fn run_raw<F>(
    name: &str,
    addr: std::net::SocketAddr,
    connections: usize,
    duration: Duration,
    call: F,
) -> Report
where
    F: Fn(usize, u64) -> Option<Call> + Send + Sync + 'static,
{
    run_raw_as(name, addr, None, connections, duration, call).await
}

/// [`run_raw`] with `Authorization: Bearer <bearer>` on every request.
pub async fn run_raw_as<F>(
    name: &str,
    addr: std::net::SocketAddr,
    bearer: Option<&str>,
    connections: usize,
    duration: Duration,
    call: F,
) -> Report
where
    F: Fn(usize, u64) -> Option<Call> + Send + Sync + 'static,
{
    let bearer: Option<Arc<str>> = bearer.map(Arc::from);
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..connections).map(|connection| {
        let call = call.clone();
        let bearer = bearer.clone();
        tokio::spawn(async move {
            let mut http = Connection::new(addr);
            if let Some(key) = &bearer {
                http = http.with_bearer(key);
            }
            let mut tally = Tally::default();
            let mut n = 0;
            while Instant::now() < deadline {
                let Some(Call { path, body, expect }) = call(connection, n) else { break };
                let sent = Instant::now();
                let outcome = match http.post(&path, &body).await {
                    Ok((200, answer)) if answer.windows(expect.len()).any(|w| w == expect) => Ok(()),
                    Ok((status, answer)) => Err(format!("{status}: {}", String::from_utf8_lossy(answer))),
                    Err(error) => Err(error),
                };
                tally.record(sent, outcome);
                n += 1;
            }
            tally.into_result()
        })
    });
    finish(name, connections, started, futures::future::join_all(loops).await)
}
