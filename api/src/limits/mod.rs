//! Rate limits and progressive blocks, one layer in front of every route.
//!
//! Requests are limited by endpoint class: the client endpoints and the
//! public ones (JWKS, health, the API document) per client address, the
//! management endpoints per API key (per address when no key is sent).
//! Every answer says where the caller stands (`X-RateLimit-Limit`,
//! `-Remaining`, `-Reset` in Unix seconds); a refusal is a JSON 429 with
//! `Retry-After`. An address that keeps failing like a guesser is blocked
//! ([`blocks`]). Counters are per process; blocks are shared through the
//! database.

mod blocks;
mod buckets;
pub mod client_ip;
pub mod routes;

use keyledger_app::client::error_chain;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keyledger_app::blocks::{BlockStore, BlockStoreError};
use keyledger_http::dialect::{Dialects, FailedGuess};

pub use blocks::BlockSettings;
use blocks::Blocks;
use buckets::{Buckets, Take};
use routes::{RouteLimits, Verdict};

use crate::metrics::ClassLabels;
use keyledger_app::secret::sha256_hex;
use keyledger_http::ApiError;

/// The address a request came from, as decided by [`client_ip::client_ip`].
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Client,
    Management,
    Public,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Client => "client",
            Class::Management => "management",
            Class::Public => "public",
        }
    }

    /// The class of a route template, among `dialects`' routes.
    pub fn of(route: Option<&str>, dialects: &Dialects) -> Self {
        let Some(route) = route else { return Class::Public };
        const CLIENT: [&str; 5] = ["/activate", "/validate", "/heartbeat", "/deactivate", "/token"];
        const PUBLIC: [&str; 6] = ["/", "/health", "/metrics", "/openapi.json", "/docs", "/api/v1/audit/public-key"];
        const DIALECT_PUBLIC: [&str; 2] = ["/license/public-key", "/v1/public-key"];
        if dialects.is_client_route(route)
            || (CLIENT.iter().any(|suffix| route.ends_with(suffix)) && route.matches('/').count() == 4)
        {
            Class::Client
        } else if PUBLIC.contains(&route) || DIALECT_PUBLIC.contains(&route) || route.ends_with("/jwks.json") {
            Class::Public
        } else {
            Class::Management
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub enabled: bool,
    pub client_per_minute: u32,
    pub management_per_minute: u32,
    pub public_per_minute: u32,
    pub max_tracked: usize,
    pub blocks: BlockSettings,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum Key {
    Address(IpAddr),
    ApiKey(String),
}

pub struct Limits {
    enabled: bool,
    client: Buckets<Key>,
    management: Buckets<Key>,
    public: Buckets<Key>,
    /// Dialect routes with budgets of their own (seed 002's table).
    routes: RouteLimits,
    blocks: Blocks,
    dialects: Dialects,
}

impl Limits {
    /// `dialects`: the dialects served, whose client routes are limited
    /// as client calls and whose route rules give a route a limit and
    /// blocks of its own.
    pub fn new(store: BlockStore, settings: LimitSettings, dialects: Dialects) -> Self {
        Self {
            enabled: settings.enabled,
            client: Buckets::new(settings.client_per_minute, settings.max_tracked),
            management: Buckets::new(settings.management_per_minute, settings.max_tracked),
            public: Buckets::new(settings.public_per_minute, settings.max_tracked),
            routes: RouteLimits::new(&dialects.route_rules(), settings.max_tracked, store.clone()),
            dialects,
            blocks: Blocks::new(store, settings.blocks, settings.max_tracked),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The dialects whose routes these limits know.
    pub fn dialects(&self) -> &Dialects {
        &self.dialects
    }

    fn buckets(&self, class: Class) -> &Buckets<Key> {
        match class {
            Class::Client => &self.client,
            Class::Management => &self.management,
            Class::Public => &self.public,
        }
    }

    /// Callers tracked by every limit and by the failure counts.
    pub fn tracked(&self) -> usize {
        self.client.len() + self.management.len() + self.public.len() + self.routes.tracked() + self.blocks.tracked()
    }

    /// Callers dropped from a full table to make room for new ones.
    pub fn evicted(&self) -> u64 {
        self.client.evicted()
            + self.management.evicted()
            + self.public.evicted()
            + self.routes.evicted()
            + self.blocks.evicted()
    }

    pub fn active_blocks(&self) -> usize {
        self.blocks.active_count(Utc::now())
    }

    /// Keeps this process's view of blocks in step with the others'.
    /// Reads the blocks every process has recorded (run each second by
    /// the runtime's `address-blocks` consumer).
    pub async fn poll_blocks(&self) -> Result<(), BlockStoreError> {
        self.blocks.poll().await?;
        self.routes.poll().await
    }

    async fn failed(&self, ip: IpAddr) {
        if let Err(error) = self.blocks.record_failure(ip).await {
            tracing::warn!(error = %error_chain(&error), "cannot record an address block");
        }
    }
}

/// The management limit's key for a request: a digest of the credential it
/// presents, unchecked (checking is the handler's work). A made-up
/// credential gets a bucket of its own, so nobody can drain a real key's
/// budget without holding the key; its 401s count against its address.
fn presented_credential(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' ').map(|(_, key)| key.trim()));
    let key = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))?;
    (!key.is_empty()).then(|| sha256_hex(key))
}

/// Addresses as the limits count them: IPv6 by its /64, which one host
/// usually holds whole, so a host can't mint a fresh budget per address.
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

fn set_headers(response: &mut Response, take: &Take) {
    let reset = Utc::now().timestamp() + take.reset_after.as_secs_f64().ceil() as i64;
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(take.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(take.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

fn too_many(code: &'static str, message: String, retry_after: Duration) -> Response {
    let mut response = ApiError::bad_request(code, message).with_status(StatusCode::TOO_MANY_REQUESTS).into_response();
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    response
}

/// What the limiting layer needs: two handles, cheap to clone per request
/// (the whole application state is not).
#[derive(Clone)]
pub struct LimitLayer {
    pub limits: Arc<Limits>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The rate limits, a layer of the front door (`router.rs`): `next` is
/// what comes after it.
pub async fn rate_limit<F: Future<Output = Response>>(
    state: &LimitLayer,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response {
    let limits = &state.limits;
    if !limits.enabled {
        return next(request).await;
    }
    let Some(&ClientIp(ip)) = request.extensions().get::<ClientIp>() else { return next(request).await };
    let ip = counted(ip);
    let class = Class::of(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str), &limits.dialects);
    let buckets = limits.buckets(class);
    let rejected =
        |reason| state.metrics.rate_limited.get_or_create(&ClassLabels { class: class.as_str(), reason }).inc();
    // A block answers the calls it was earned on: the client endpoints,
    // and management calls that fail authentication. `/health` and the
    // other public endpoints stay open, and so does a management call with
    // a valid key: a noisy neighbour behind a shared address can't lock a
    // vendor's staff, or the load balancer's probe, out.
    let blocked = match class {
        Class::Public => None,
        Class::Client | Class::Management => limits.blocks.blocked(ip, Utc::now()),
    };
    let block_answer = |left: Duration| {
        rejected("blocked");
        let mut response = too_many(
            "blocked",
            format!("This address is blocked for {} more seconds after repeated failures", left.as_secs().max(1)),
            left,
        );
        let take = Take { allowed: false, limit: buckets.limit(), remaining: 0, reset_after: left, retry_after: left };
        set_headers(&mut response, &take);
        response
    };
    if let (Some(left), Class::Client) = (blocked, class) {
        return block_answer(left);
    }
    if let Some(route_limit) = request.extensions().get::<MatchedPath>().and_then(|p| limits.routes.get(p.as_str())) {
        let limit = route_limit.rule.per_minute;
        let take = match route_limit.check(ip, Instant::now()) {
            Verdict::Allowed(take) => take,
            verdict @ (Verdict::Blocked(left) | Verdict::BlockedNow(left)) => {
                if matches!(verdict, Verdict::BlockedNow(_)) {
                    if let Err(error) = limits.routes.share(route_limit, ip, left).await {
                        tracing::warn!(error = %error_chain(&error), "cannot share a route block");
                    }
                }
                rejected("blocked");
                let mut response = too_many(
                    "rate_limited",
                    format!("Too many requests; this address may call again in {} seconds", left.as_secs().max(1)),
                    left,
                );
                let take = Take { allowed: false, limit, remaining: 0, reset_after: left, retry_after: left };
                set_headers(&mut response, &take);
                return response;
            }
        };
        let mut response = next(request).await;
        if response.status() == StatusCode::UNAUTHORIZED || response.extensions().get::<FailedGuess>().is_some() {
            limits.failed(ip).await;
        }
        set_headers(&mut response, &take);
        return response;
    }
    let key = match class {
        Class::Management => presented_credential(request.headers()).map_or(Key::Address(ip), Key::ApiKey),
        Class::Client | Class::Public => Key::Address(ip),
    };
    let take = buckets.take(&key, Instant::now());
    if !take.allowed {
        // Not a failure that counts towards a block: only failed guesses
        // (unknown keys, bad credentials) do. A client that merely calls
        // too often is slowed by its budget, not blocked.
        rejected("rate_limited");
        let mut response =
            too_many("rate_limited", format!("Too many {} requests; retry later", class.as_str()), take.retry_after);
        set_headers(&mut response, &take);
        return response;
    }
    let mut response = next(request).await;
    if let (Some(left), StatusCode::UNAUTHORIZED) = (blocked, response.status()) {
        // A blocked address's management call without a valid key.
        return block_answer(left);
    }
    if response.status() == StatusCode::UNAUTHORIZED || response.extensions().get::<FailedGuess>().is_some() {
        limits.failed(ip).await;
    }
    set_headers(&mut response, &take);
    response
}
