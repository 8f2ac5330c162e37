//! The OpenAPI 3.1 document: every route's operation comes from its
//! handler's `#[utoipa::path]` annotation (collected by the routes as they
//! are registered, so a route can't be served without being described);
//! each dialect holds the shapes of the JSON bodies its handlers build by
//! hand. This module holds the security schemes, the document's head and
//! the shapes of the server's own endpoints (`/`, `/health`).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths};
use utoipa::ToSchema;

pub use keyledger_http::error::ErrorBody as Error;

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ServiceStatus {
    status: String,
    service: String,
    version: String,
    timestamp: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct Health {
    /// healthy, unhealthy, or loading (right after a start, until the
    /// validation view holds every license).
    status: String,
    /// sqlite or postgres.
    store: String,
    /// This process's background consumers.
    consumers: Vec<ConsumerHealth>,
    validation_view: ValidationViewHealth,
    timestamp: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ValidationViewHealth {
    /// Whether it is still being loaded after a start (validate answers
    /// meanwhile, from the read model where the view lacks a license).
    loading: bool,
    /// Licenses it holds.
    licenses: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct ConsumerHealth {
    /// e.g. projection:license_view, validation_view_follower, nats-relay.
    name: String,
    /// starting, standby (another process holds its lease), running,
    /// failing, restarting or stopped.
    state: String,
    /// One active instance per database.
    exclusive: bool,
    /// Times it panicked and was built again.
    restarts: u64,
    /// Failed steps since the process started.
    failures: u64,
    /// Failed steps since its last good one.
    consecutive_failures: u64,
    /// Always null here: what went wrong is in the log.
    last_error: Option<String>,
    last_success_at: Option<String>,
    /// When its current run of failures began.
    failing_since: Option<String>,
    /// Events committed it has not handled (consumers of the log's tail).
    lag_events: Option<i64>,
    /// Age of the oldest of those events, in seconds.
    lag_seconds: Option<f64>,
    /// Not down and not further behind than the threshold. Absent when the
    /// store does not answer.
    healthy: Option<bool>,
}

/// The document for `paths`, with its schemas, security schemes and head.
pub fn document(
    paths: Paths,
    schemas: Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
) -> OpenApi {
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (klk_…) or the operator token"))
                    .build(),
            ),
        )
        .security_scheme("apiKey", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))))
        .security_scheme(
            "license",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Keygen's `License <license key>` (the Keygen dialect)",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("keyledger")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A self-hosted, event-sourced license server. License paths are served under both \
                     /api/v1/licenses (native) and /api/v1/fastrLicense (seed 000's own). Every error is JSON \
                     with a stable `code`. The client endpoints sign every answer (header Keyledger-Signature).",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}
