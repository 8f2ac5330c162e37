//! Settings, from flags or `KEYLEDGER_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keyledger", version, about = "Self-hosted, event-sourced license server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API (what `keyledger` with no subcommand does).
    Serve,
    /// Maintain the read models derived from the event log.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Check the event log for tampering.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Print the configuration reference (every setting, its environment
    /// variable and default) as Markdown: docs/configuration.md.
    Configuration,
}

#[derive(Subcommand)]
pub enum AuditAction {
    /// Recompute every license's hash chain and report the first broken link
    /// of each; exits 1 if any chain is broken or a checkpoint does not match.
    Verify {
        /// Check only this license (its id).
        #[arg(long)]
        license: Option<String>,
        /// Also check the log against a signed checkpoint kept in this JSON file.
        #[arg(long, requires = "public_key")]
        checkpoint: Option<std::path::PathBuf>,
        /// The auditor's copy of the public key (hex) the checkpoint must be signed with.
        #[arg(long, requires = "checkpoint")]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ProjectionsAction {
    /// Replay the event log from position 0 into the read models; safe while servers run.
    Rebuild {
        /// Only this read model (today there is one: license_view).
        name: Option<String>,
    },
}

/// Deliberately not `Debug`: it holds secrets.
#[derive(Args, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "KEYLEDGER_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Directory for the embedded database and generated secrets.
    #[arg(long, env = "KEYLEDGER_DATA_DIR", default_value = "./keyledger-data", global = true)]
    pub data_dir: PathBuf,

    /// `postgres://…` or `sqlite://…`; defaults to SQLite in the data directory.
    #[arg(long, env = "KEYLEDGER_DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// The operator (platform admin) token; generated into the data directory when unset.
    #[arg(long, env = "KEYLEDGER_OPERATOR_TOKEN", hide_env_values = true, global = true)]
    pub operator_token: Option<String>,

    /// Key for hashing machine ids; generated once and kept in the database when unset.
    #[arg(long, env = "KEYLEDGER_MACHINE_ID_SECRET", hide_env_values = true, global = true)]
    pub machine_id_secret: Option<String>,

    /// `nats://host:4222`: publish every event to NATS JetStream.
    #[arg(long, env = "KEYLEDGER_NATS_URL", hide_env_values = true, global = true)]
    pub nats_url: Option<String>,

    /// The JetStream stream events are published to.
    #[arg(long, env = "KEYLEDGER_NATS_STREAM", default_value = "KEYLEDGER_EVENTS", global = true)]
    pub nats_stream: String,

    /// Seconds JetStream remembers event ids to drop republished events.
    #[arg(long, env = "KEYLEDGER_NATS_DUPLICATE_WINDOW_SECS", default_value_t = 3600, global = true)]
    pub nats_duplicate_window_secs: u32,

    /// Ed25519 key (64 hex characters) that signs audit checkpoints; generated into the data directory when unset.
    #[arg(long, env = "KEYLEDGER_SIGNING_KEY", hide_env_values = true, global = true)]
    pub signing_key: Option<String>,

    /// The master key (64 hex characters) that seals tenants' private
    /// signing keys in the database; generated into the data directory when
    /// unset. Every process on one database needs the same one.
    #[arg(long, env = "KEYLEDGER_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,

    /// Longest life of an offline license token, in seconds (never past
    /// the license's own expiry).
    #[arg(long, env = "KEYLEDGER_TOKEN_TTL_SECS", default_value_t = 604_800, value_parser = clap::value_parser!(u32).range(60..), global = true)]
    pub token_ttl_secs: u32,

    /// Seconds between signed audit checkpoints; 0 makes them on request only.
    #[arg(long, env = "KEYLEDGER_CHECKPOINT_SECS", default_value_t = 3600, global = true)]
    pub checkpoint_secs: u32,

    /// At most one heartbeat event per device per this many seconds.
    #[arg(long, env = "KEYLEDGER_HEARTBEAT_INTERVAL_SECS", default_value_t = 900, global = true)]
    pub heartbeat_interval_secs: u32,

    /// At most one heartbeat event per device per this many seconds from
    /// the explicit heartbeat endpoint.
    #[arg(long, env = "KEYLEDGER_HEARTBEAT_FLOOR_SECS", default_value_t = 60, global = true)]
    pub heartbeat_floor_secs: u32,

    /// Seconds between sweeps that record expired licenses; 0 turns sweeping off.
    #[arg(long, env = "KEYLEDGER_EXPIRY_SWEEP_SECS", default_value_t = 60, global = true)]
    pub expiry_sweep_secs: u32,

    /// Seconds between sweeps that free the seats of devices whose
    /// heartbeats stopped (licenses with a heartbeat policy); 0 turns
    /// sweeping off (dead devices are still refused).
    #[arg(long, env = "KEYLEDGER_HEARTBEAT_SWEEP_SECS", default_value_t = 5, global = true)]
    pub heartbeat_sweep_secs: u32,

    /// `GET /health` reports a background consumer as behind (and answers
    /// 503) when the oldest event it has not handled is older than this,
    /// or as down when it has been failing for this long.
    #[arg(long, env = "KEYLEDGER_HEALTH_MAX_LAG_SECS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub health_max_lag_secs: u32,

    /// Seconds a client has to send a request's head, from connecting or
    /// from the request's first byte.
    #[arg(long, env = "KEYLEDGER_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub header_read_timeout_secs: u32,

    /// Seconds a client has to send a request's whole body.
    #[arg(long, env = "KEYLEDGER_BODY_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub body_read_timeout_secs: u32,

    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "KEYLEDGER_KEEP_ALIVE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub keep_alive_timeout_secs: u32,

    /// Open connections allowed from one client address; 0 for no cap.
    #[arg(long, env = "KEYLEDGER_MAX_CONNECTIONS_PER_IP", default_value_t = 256, global = true)]
    pub max_connections_per_ip: u32,

    /// Open connections allowed in all; 0 for no cap.
    #[arg(long, env = "KEYLEDGER_MAX_CONNECTIONS", default_value_t = 10_000, global = true)]
    pub max_connections: u32,

    /// `off` turns rate limits and address blocks off, for deployments
    /// whose gateway limits, and for load tests.
    #[arg(long, env = "KEYLEDGER_RATE_LIMITS", default_value = "on", value_parser = ["on", "off"], global = true)]
    pub rate_limits: String,

    /// Requests a minute per client address to the client endpoints.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_CLIENT_PER_MINUTE", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_client_per_minute: u32,

    /// Requests a minute per API key to the management endpoints.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_MANAGEMENT_PER_MINUTE", default_value_t = 1200, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_management_per_minute: u32,

    /// Requests a minute per client address to the public endpoints.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_PUBLIC_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_public_per_minute: u32,

    /// Failed guesses a minute (unknown or malformed license keys, failed
    /// authentication) after which an address is blocked from the client
    /// endpoints (and from management calls without a valid key); 429s and
    /// valid answers never count.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_BLOCK_AFTER", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_block_after: u32,

    /// Length of an address's first block, in seconds; each next one doubles.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_BLOCK_BASE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_block_base_secs: u32,

    /// Longest block, in seconds.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_BLOCK_MAX_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_block_max_secs: u32,

    /// Seconds without a block after which an address's next block is
    /// the base length again.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_BLOCK_DECAY_SECS", default_value_t = 3600, global = true)]
    pub rate_limit_block_decay_secs: u32,

    /// Most callers each limit tracks at once; past it, newcomers share one
    /// bucket, so a flood from many addresses can't grow memory.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT_MAX_TRACKED", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1000..), global = true)]
    pub rate_limit_max_tracked: u32,

    /// Proxies (addresses or CIDR ranges, comma-separated) whose
    /// `X-Forwarded-For` or `Forwarded` header names the client.
    #[arg(long, env = "KEYLEDGER_TRUSTED_PROXIES", default_value = "", global = true)]
    pub trusted_proxies: String,

    /// The one header trusted proxies name the client in:
    /// `x-forwarded-for` or `forwarded` (RFC 7239). The other is ignored,
    /// and an entry in this one that is not an address is refused with 400
    /// `unreadable_forwarded_header`, never charged to the proxy.
    #[arg(long, env = "KEYLEDGER_FORWARDED_HEADER", default_value = "x-forwarded-for", value_parser = ["x-forwarded-for", "forwarded"], global = true)]
    pub forwarded_header: String,

    /// A PEM file with the certificate chain to serve HTTPS with (with
    /// KEYLEDGER_TLS_KEY); without it keyledger speaks plain HTTP, for a
    /// TLS-terminating proxy in front.
    #[arg(long, env = "KEYLEDGER_TLS_CERT", global = true)]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM file of the certificate's private key.
    #[arg(long, env = "KEYLEDGER_TLS_KEY", global = true)]
    pub tls_key: Option<std::path::PathBuf>,

    /// `true` refuses requests that did not come over HTTPS (keyledger's
    /// own TLS, or a trusted proxy saying `X-Forwarded-Proto: https`) with
    /// 403 `https_required`; `GET /health` stays open for probes.
    #[arg(long, env = "KEYLEDGER_REQUIRE_HTTPS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub require_https: bool,

    /// When set, `GET /metrics` needs `Authorization: Bearer <this>`.
    #[arg(long, env = "KEYLEDGER_METRICS_TOKEN", hide_env_values = true, global = true)]
    pub metrics_token: Option<String>,

    /// Waits in seconds before each retry of a failed webhook delivery,
    /// comma-separated (the first attempt is immediate).
    #[arg(long, env = "KEYLEDGER_WEBHOOK_RETRY_SCHEDULE", default_value = keyledger_app::webhooks::policy::DEFAULT_SCHEDULE, global = true)]
    pub webhook_retry_schedule: String,

    /// Seconds an endpoint has to answer a delivery.
    #[arg(long, env = "KEYLEDGER_WEBHOOK_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=300), global = true)]
    pub webhook_timeout_secs: u32,

    /// An endpoint failing every attempt for this many seconds is disabled.
    #[arg(long, env = "KEYLEDGER_WEBHOOK_DISABLE_AFTER_SECS", default_value_t = 432_000, global = true)]
    pub webhook_disable_after_secs: u32,

    /// `off`: this process neither dispatches nor sends webhooks (other
    /// processes on the database do).
    #[arg(long, env = "KEYLEDGER_WEBHOOK_DELIVERY", default_value = "on", value_parser = ["on", "off"], global = true)]
    pub webhook_delivery: String,

    /// `off`: this process does not run the anomaly detector (another
    /// process on the database does, or none). Calls are still counted
    /// and reported to the log.
    #[arg(long, env = "KEYLEDGER_ANOMALY_DETECTION", default_value = "on", value_parser = ["on", "off"], global = true)]
    pub anomaly_detection: String,

    /// Allow webhook URLs on loopback and private networks, and plain http.
    #[arg(long, env = "KEYLEDGER_WEBHOOK_ALLOW_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub webhook_allow_private_networks: bool,

    /// The most webhook endpoints one tenant may have: every event fans out
    /// to each of them, so their number is what one tenant's events cost
    /// the senders every tenant shares.
    #[arg(long, env = "KEYLEDGER_WEBHOOK_MAX_ENDPOINTS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub webhook_max_endpoints: u32,

    /// `false` turns the admin panel (web pages for a vendor's staff) off.
    #[arg(long, env = "KEYLEDGER_PANEL", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub panel: bool,

    /// The path the admin panel is served under: `/` and 1 to 32 lower
    /// case letters, digits or `-`.
    #[arg(long, env = "KEYLEDGER_PANEL_PATH", default_value = "/admin", global = true)]
    pub panel_path: String,

    /// Minutes a panel session may go unused before it ends.
    #[arg(long, env = "KEYLEDGER_PANEL_IDLE_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1440), global = true)]
    pub panel_idle_minutes: u32,

    /// Hours a panel session lasts at most after sign-in, used or not.
    #[arg(long, env = "KEYLEDGER_PANEL_SESSION_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=720), global = true)]
    pub panel_session_hours: u32,

    /// Size of the database connection pool.
    #[arg(long, env = "KEYLEDGER_DB_MAX_CONNECTIONS", default_value_t = 16, global = true)]
    pub db_max_connections: u32,
}

impl Config {
    /// The webhook retry schedule, attempt timeout and disabling rule.
    pub(crate) fn retry_policy(&self) -> Result<keyledger_app::webhooks::RetryPolicy, String> {
        let delays = keyledger_app::webhooks::RetryPolicy::parse_schedule(&self.webhook_retry_schedule)
            .map_err(|e| format!("KEYLEDGER_WEBHOOK_RETRY_SCHEDULE: {e}"))?;
        Ok(keyledger_app::webhooks::RetryPolicy {
            delays,
            timeout: std::time::Duration::from_secs(self.webhook_timeout_secs.into()),
            disable_after: std::time::Duration::from_secs(self.webhook_disable_after_secs.into()),
        })
    }

    /// Where and how the admin panel is served, or why its path is refused.
    pub(crate) fn panel_config(&self) -> Result<Option<keyledger_panel::PanelConfig>, String> {
        if !self.panel {
            return Ok(None);
        }
        let name = self.panel_path.strip_prefix('/').unwrap_or_default();
        let fine = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !matches!(name, "api" | "keygen" | "v1" | "v2" | "license" | "health" | "metrics" | "docs");
        if !fine {
            return Err(format!(
                "KEYLEDGER_PANEL_PATH must be `/` and 1 to 32 lower case letters, digits or `-`, and not an API's own path; it is {:?}",
                self.panel_path
            ));
        }
        Ok(Some(keyledger_panel::PanelConfig {
            base: self.panel_path.clone(),
            idle: chrono::Duration::minutes(self.panel_idle_minutes.into()),
            lifetime: chrono::Duration::hours(self.panel_session_hours.into()),
            secure_cookies: self.tls_cert.is_some() || self.require_https,
        }))
    }

    /// The connection deadlines and caps.
    pub(crate) fn limit_settings(&self) -> crate::limits::LimitSettings {
        let secs = |s: u32| std::time::Duration::from_secs(s.into());
        crate::limits::LimitSettings {
            enabled: self.rate_limits != "off",
            client_per_minute: self.rate_limit_client_per_minute,
            management_per_minute: self.rate_limit_management_per_minute,
            public_per_minute: self.rate_limit_public_per_minute,
            max_tracked: self.rate_limit_max_tracked as usize,
            blocks: crate::limits::BlockSettings {
                after_failures: self.rate_limit_block_after,
                base: secs(self.rate_limit_block_base_secs),
                max: secs(self.rate_limit_block_max_secs.max(self.rate_limit_block_base_secs)),
                decay: secs(self.rate_limit_block_decay_secs),
            },
        }
    }

    pub(crate) fn server_settings(
        &self,
        trusted_proxies: Vec<crate::limits::client_ip::Cidr>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> crate::server::ServerSettings {
        let secs = |s: u32| std::time::Duration::from_secs(s.into());
        crate::server::ServerSettings {
            trusted_proxies: std::sync::Arc::new(trusted_proxies),
            forwarded_header: crate::limits::client_ip::ForwardedHeader::parse(&self.forwarded_header)
                .unwrap_or(crate::limits::client_ip::ForwardedHeader::XForwardedFor),
            tls,
            require_https: self.require_https,
            deadlines: crate::server::Deadlines {
                header_read: secs(self.header_read_timeout_secs),
                keep_alive: secs(self.keep_alive_timeout_secs),
            },
            body_read: secs(self.body_read_timeout_secs),
            caps: crate::server::ConnectionCaps { per_ip: self.max_connections_per_ip, total: self.max_connections },
        }
    }

    /// The configured database URL, or the embedded SQLite file.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("keyledger.db").display()),
        }
    }

    /// Defaults for a server on `listen` with its data in `data_dir`, as if
    /// no flag or variable were set.
    pub fn with_defaults(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database_url: None,
            operator_token: None,
            machine_id_secret: None,
            signing_key: None,
            master_key: None,
            token_ttl_secs: 604_800,
            nats_url: None,
            nats_stream: "KEYLEDGER_EVENTS".to_owned(),
            nats_duplicate_window_secs: 3600,
            checkpoint_secs: 3600,
            heartbeat_interval_secs: 900,
            heartbeat_floor_secs: 60,
            expiry_sweep_secs: 60,
            heartbeat_sweep_secs: 5,
            health_max_lag_secs: 60,
            db_max_connections: 16,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            keep_alive_timeout_secs: 60,
            max_connections_per_ip: 256,
            max_connections: 10_000,
            rate_limits: "on".to_owned(),
            rate_limit_client_per_minute: 300,
            rate_limit_management_per_minute: 1200,
            rate_limit_public_per_minute: 600,
            rate_limit_block_after: 30,
            rate_limit_block_base_secs: 120,
            rate_limit_block_max_secs: 3600,
            rate_limit_block_decay_secs: 3600,
            rate_limit_max_tracked: 100_000,
            trusted_proxies: String::new(),
            forwarded_header: "x-forwarded-for".to_owned(),
            tls_cert: None,
            tls_key: None,
            require_https: false,
            metrics_token: None,
            webhook_retry_schedule: keyledger_app::webhooks::policy::DEFAULT_SCHEDULE.to_owned(),
            webhook_timeout_secs: 15,
            webhook_disable_after_secs: 432_000,
            webhook_allow_private_networks: false,
            webhook_max_endpoints: 50,
            panel: true,
            panel_path: "/admin".to_owned(),
            panel_idle_minutes: 30,
            panel_session_hours: 12,
            webhook_delivery: "on".to_owned(),
            anomaly_detection: "on".to_owned(),
        }
    }
}
