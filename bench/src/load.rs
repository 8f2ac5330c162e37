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
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            let mut n = 0;
            while Instant::now() < deadline {
                let Some(call) = request(connection, n) else { break };
                let sent = Instant::now();
                let outcome = call.await;
                latencies.push(sent.elapsed().as_micros() as u32);
                if let Err(error) = outcome {
                    errors += 1;
                    first_error.get_or_insert(error);
                }
                n += 1;
            }
            (latencies, errors, first_error)
        })
    });
    let results = futures::future::join_all(loops).await;
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
