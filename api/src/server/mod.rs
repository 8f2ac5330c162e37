//! The HTTP server under the router: accepting connections, capping them
//! per client address, keeping each to its deadlines, and stopping
//! gracefully.
//!
//! axum's own `serve` offers none of these knobs, so connections are served
//! here with hyper directly (HTTP/1.1, over TLS when keyledger is given a
//! certificate, else plain behind a TLS-terminating proxy).

mod guard;
mod limits;
pub mod tls;

use keyledger_app::client::error_chain;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, Uri};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

pub use guard::Deadlines;
pub use limits::ConnectionCaps;

use crate::limits::client_ip::{client_ip, Cidr, ForwardedHeader};
use crate::limits::ClientIp;
use guard::GuardedIo;
use keyledger_http::extract::BodyReadTimeout;
use limits::{ConnectionLimits, ConnectionSlot, Refusal};
use std::sync::Arc;

/// hyper's read buffer, which bounds a request's head: a longer head is
/// answered 431, and a URI over 64 KiB within it 414. Shorter URIs over
/// the router's own limit (16 KiB) get its 414.
const MAX_HEAD_BYTES: usize = 128 * 1024;
/// How long in-flight requests get to finish once a stop is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ServerSettings {
    pub deadlines: Deadlines,
    pub body_read: Duration,
    pub caps: ConnectionCaps,
    /// Proxies whose `X-Forwarded-For` is believed, and which are exempt
    /// from the per-address connection cap (every client comes through them).
    pub trusted_proxies: Arc<Vec<Cidr>>,
    /// The header trusted proxies name the client in.
    pub forwarded_header: ForwardedHeader,
    /// TLS on every connection, when keyledger has a certificate.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Refuse requests that did not come over HTTPS (`screen` answers them).
    pub require_https: bool,
}

/// Marks a request that came over plain HTTP (neither over keyledger's own
/// TLS nor through a trusted proxy that says `X-Forwarded-Proto: https`)
/// when HTTPS is required.
#[derive(Debug, Clone, Copy)]
pub struct PlainHttp;

/// Whether a trusted proxy says the client's request came over HTTPS: the
/// last value of the last `X-Forwarded-Proto`, the one the nearest proxy
/// wrote (earlier ones may come from the client).
fn forwarded_https(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets kept-alive connections close after their current
/// request, and waits for in-flight requests (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = ConnectionLimits::new(settings.caps);
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a sender; the receiver sees the channel
    // close when the last one ends.
    let (in_flight, mut drained) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some
                    // to be given back rather than spin.
                    tracing::warn!(error = %error_chain(&error), "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let trusted = settings.trusted_proxies.iter().any(|proxy| proxy.contains(peer.ip()));
        match limits.try_open(peer.ip(), trusted) {
            Ok(slot) => {
                let connection = Connection { peer, router: router.clone(), settings: settings.clone(), _slot: slot };
                tokio::spawn(connection.serve(stream, stopping.clone(), in_flight.clone()));
            }
            Err(refusal) => {
                tokio::spawn(refuse(stream, refusal));
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(in_flight);
    if tokio::time::timeout(SHUTDOWN_GRACE, drained.recv()).await.is_err() {
        tracing::warn!("requests still in flight after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs());
    }
    Ok(())
}

/// Answers a connection over a cap with a 503 and closes it, without
/// reading its request.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let message = match refusal {
        Refusal::PerIp => "Too many open connections from this address",
        Refusal::Total => "Too many open connections",
    };
    let body = serde_json::json!({ "success": false, "error": message, "code": "too_many_connections" }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

struct Connection {
    peer: SocketAddr,
    router: Router,
    settings: ServerSettings,
    /// Held while the connection is open.
    _slot: ConnectionSlot,
}

impl Connection {
    async fn serve(self, stream: TcpStream, stopping: watch::Receiver<bool>, in_flight: mpsc::Sender<()>) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.settings.tls.clone() else {
            return self.serve_io(stream, false, stopping, in_flight).await;
        };
        // The handshake gets the time a request's head gets.
        match tokio::time::timeout(self.settings.deadlines.header_read, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve_io(tls, true, stopping, in_flight).await,
            Ok(Err(error)) => tracing::debug!(peer = %self.peer, error = %error_chain(&error), "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    async fn serve_io<S>(
        self,
        stream: S,
        over_tls: bool,
        mut stopping: watch::Receiver<bool>,
        _in_flight: mpsc::Sender<()>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let guarded = GuardedIo::new(stream, self.settings.deadlines);
        let watch = guarded.watch();
        let io = TokioIo::new(guarded);
        let (peer, router, body_read) = (self.peer, self.router, BodyReadTimeout(self.settings.body_read));
        let trusted = self.settings.trusted_proxies.clone();
        let forwarded_header = self.settings.forwarded_header;
        let require_https = self.settings.require_https;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let ip = client_ip(peer.ip(), request.headers(), &trusted, forwarded_header);
            if require_https && !over_tls {
                let proxied =
                    trusted.iter().any(|proxy| proxy.contains(peer.ip())) && forwarded_https(request.headers());
                if !proxied {
                    request.extensions_mut().insert(PlainHttp);
                }
            }
            match ip {
                Ok(ip) => {
                    request.extensions_mut().insert(ClientIp(ip));
                }
                // Answered 400 by the screen; with no client address, the
                // rate limits and blocks charge nobody for it.
                Err(unreadable) => {
                    request.extensions_mut().insert(unreadable);
                }
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(body_read);
            strip_trailing_slash(&mut request);
            router.clone().oneshot(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .writev(false)
            .serve_connection(io, service);
        tokio::pin!(connection);
        let served = loop {
            let deadline = watch.deadline();
            tokio::select! {
                served = connection.as_mut() => break served,
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    connection.as_mut().graceful_shutdown();
                    break connection.await;
                }
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if watch.deadline().is_some_and(|at| at <= tokio::time::Instant::now()) {
                        // Waiting for a head, or idle, past its deadline:
                        // dropping the connection closes the socket.
                        tracing::debug!(peer = %peer, "connection closed at its deadline");
                        return;
                    }
                }
                () = watch.changed.notified() => {}
            }
        };
        if let Err(error) = served {
            // Timeouts and clients that go away: routine, not the server's fault.
            tracing::debug!(peer = %peer, error = %error_chain(&error), "connection ended with an error");
        }
    }
}

/// `/api/v1/licenses/` is `/api/v1/licenses`: a trailing slash is not a
/// different resource.
fn strip_trailing_slash<B>(request: &mut Request<B>) {
    let path = request.uri().path();
    if path.len() <= 1 || !path.ends_with('/') {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = path_and_query.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_proxys_forwarded_proto_counts() {
        let headers = |values: &[&str]| {
            let mut map = axum::http::HeaderMap::new();
            for value in values {
                map.append("x-forwarded-proto", value.parse().unwrap());
            }
            map
        };
        assert!(forwarded_https(&headers(&["https"])));
        assert!(forwarded_https(&headers(&["http, HTTPS"])));
        assert!(!forwarded_https(&headers(&["https", "http"])), "a client's own line comes first");
        assert!(!forwarded_https(&headers(&["https, http"])));
        assert!(!forwarded_https(&headers(&[])));
    }

    fn stripped(uri: &str) -> String {
        let mut request = Request::builder().uri(uri).body(()).unwrap();
        strip_trailing_slash(&mut request);
        request.uri().to_string()
    }

    #[test]
    fn trailing_slashes_are_dropped_but_the_root_stays() {
        assert_eq!(stripped("/api/v1/licenses/"), "/api/v1/licenses");
        assert_eq!(stripped("/api/v1/licenses//?limit=1"), "/api/v1/licenses?limit=1");
        assert_eq!(stripped("/"), "/");
        assert_eq!(stripped("//"), "/");
        assert_eq!(stripped("/health"), "/health");
    }
}
