//! The Prometheus metrics of one process, served at `GET /metrics`.
//!
//! Counters and histograms are recorded as things happen (each request,
//! command and appended event); the gauges that describe state (consumer
//! lag, licenses held in memory, address blocks, the connection pool) are
//! read when Prometheus scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `store`: the read model was asked; `memory`: this process knew.
    pub source: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub commands: Family<CommandLabels, Counter>,
    pub key_lookups: Family<LookupLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub consumer_lag_events: Family<ConsumerLabels, Gauge>,
    pub consumer_lag_seconds: Family<ConsumerLabels, Gauge<f64, AtomicU64>>,
    pub consumer_up: Family<ConsumerLabels, Gauge>,
    pub consumer_restarts: Family<ConsumerLabels, Counter>,
    pub consumer_failures: Family<ConsumerLabels, Counter>,
    pub webhook_attempts: Family<OutcomeLabels, Counter>,
    pub webhook_attempt_duration: Histogram,
    pub webhook_pending: Gauge,
    pub view_licenses: Gauge,
    pub rate_limited: Family<ClassLabels, Counter>,
    pub active_blocks: Gauge,
    pub tracked_callers: Gauge,
    pub evicted_callers: Gauge,
    pub pool_connections: Family<PoolLabels, Gauge>,
    /// Scrapes take turns: the gauges are set, then read.
    pub scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyledger");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route template, method and status",
            http_duration.clone(),
        );
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "License commands run, by command and outcome (ok, refused, contended, failed)",
            commands.clone(),
        );
        let key_lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "client_key_lookups",
            "License keys the client calls looked up, by where the answer came from (memory, store)",
            key_lookups.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register("events_appended", "Events this process appended to the log, by type", events.clone());
        let consumer_lag_events = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "consumer_lag_events",
            "Events committed to the log that a background consumer has not handled yet (counted up to 100000)",
            consumer_lag_events.clone(),
        );
        let consumer_lag_seconds = Family::<ConsumerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "consumer_lag_seconds",
            "Age of the oldest event a background consumer has not handled yet",
            consumer_lag_seconds.clone(),
        );
        let consumer_up = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "consumer_up",
            "1 if a background consumer is running or standing by and not further behind than the health threshold, else 0",
            consumer_up.clone(),
        );
        let consumer_restarts = Family::<ConsumerLabels, Counter>::default();
        registry.register(
            "consumer_restarts",
            "Times a background consumer panicked and was built again",
            consumer_restarts.clone(),
        );
        let consumer_failures = Family::<ConsumerLabels, Counter>::default();
        registry.register(
            "consumer_failures",
            "Steps of a background consumer that failed and were retried",
            consumer_failures.clone(),
        );
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts this process made, by outcome (delivered, failed, gone)",
            webhook_attempts.clone(),
        );
        let webhook_attempt_duration = latency_histogram();
        registry.register(
            "webhook_attempt_duration_seconds",
            "Time from sending a webhook delivery to its answer (or failure)",
            webhook_attempt_duration.clone(),
        );
        let webhook_pending = Gauge::default();
        registry.register(
            "webhook_deliveries_pending",
            "Webhook deliveries recorded and not yet delivered or given up, in the whole database",
            webhook_pending.clone(),
        );
        let view_licenses = Gauge::default();
        registry.register(
            "validation_view_licenses",
            "Licenses held in this process's in-memory validation view",
            view_licenses.clone(),
        );
        let rate_limited = Family::<ClassLabels, Counter>::default();
        registry.register(
            "rate_limit_rejections",
            "Requests refused with 429, by endpoint class and reason (rate_limited, blocked)",
            rate_limited.clone(),
        );
        let active_blocks = Gauge::default();
        registry.register("rate_limit_active_blocks", "Client addresses blocked now", active_blocks.clone());
        let tracked_callers = Gauge::default();
        registry.register(
            "rate_limit_tracked_callers",
            "Callers whose rate limits or failures this process tracks",
            tracked_callers.clone(),
        );
        let evicted_callers = Gauge::default();
        registry.register(
            "rate_limit_evicted_callers",
            "Callers dropped from the limiter's full table to make room for new ones, since the process started",
            evicted_callers.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections, by state (idle, in_use, max)",
            pool_connections.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            commands,
            key_lookups,
            events,
            consumer_lag_events,
            consumer_lag_seconds,
            consumer_up,
            consumer_restarts,
            consumer_failures,
            webhook_attempts,
            webhook_attempt_duration,
            webhook_pending,
            view_licenses,
            rate_limited,
            active_blocks,
            tracked_callers,
            evicted_callers,
            pool_connections,
            scrape: tokio::sync::Mutex::new(()),
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = HttpLabels { route: route.to_owned(), method: method.to_owned(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&labels).observe(seconds);
    }

    pub fn command(&self, command: &'static str, outcome: &'static str) {
        self.commands.get_or_create(&CommandLabels { command, outcome }).inc();
    }

    pub fn webhook_attempt(&self, outcome: &'static str, seconds: f64) {
        self.webhook_attempts.get_or_create(&OutcomeLabels { outcome }).inc();
        self.webhook_attempt_duration.observe(seconds);
    }

    pub fn event(&self, event_type: &str) {
        self.events.get_or_create(&EventLabels { r#type: event_type.to_owned() }).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
