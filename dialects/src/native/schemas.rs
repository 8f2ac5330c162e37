//! The shapes of the JSON bodies the native API's handlers build by hand,
//! for the OpenAPI document.

use utoipa::ToSchema;

pub use keyledger_http::error::ErrorBody as Error;

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct ActivateAnswer {
    success: bool,
    error: Option<String>,
    /// `VALID`.
    code: String,
    activated_at: Option<String>,
    expires_at: Option<String>,
    /// 0 Trial, 1 Standard, 2 Professional, 3 Enterprise.
    license_type: i32,
    max_connections: Option<u32>,
    /// The id of the machine's device record on the license, made at its
    /// first activation and the same on every later one (seed 000's cloud
    /// account, "created, or linked if one already exists", for the
    /// activated server).
    cloud_account_id: Option<String>,
    /// The tenant that issued the license.
    account_id: String,
    user_id: String,
    /// An offline license token: a JWT signed with EdDSA, checked against the tenant's JWKS.
    license_token: String,
    nonce: Option<String>,
    license_key: Option<String>,
    machine_id: Option<String>,
    issued_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct ValidateAnswer {
    is_valid: bool,
    error: Option<String>,
    /// `VALID`, or why the license is not valid (a client answer code).
    code: String,
    /// The platform's code for why the license is not valid.
    reason: Option<String>,
    /// `FEATURE_MISSING`: the required features the license lacks.
    missing_features: Option<Vec<String>>,
    /// With `appVersion`: a newer stable release of the license's product
    /// is out (null when `appVersion` is not a semantic version).
    update_available: Option<bool>,
    /// With `appVersion`: the newest stable release out.
    latest_version: Option<String>,
    /// With `appVersion`: a mandatory release newer than it is out.
    mandatory_update: Option<bool>,
    expires_at: Option<String>,
    license_type: Option<i32>,
    max_connections: Option<u32>,
    nonce: Option<String>,
    license_key: Option<String>,
    machine_id: Option<String>,
    issued_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct DeactivateAnswer {
    success: bool,
    error: Option<String>,
    /// `DEACTIVATED`.
    code: String,
    message: String,
    nonce: Option<String>,
    license_key: Option<String>,
    machine_id: Option<String>,
    issued_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct TokenAnswer {
    success: bool,
    error: Option<String>,
    /// `VALID`.
    code: String,
    license_token: String,
    token_expires_at: String,
    nonce: Option<String>,
    license_key: Option<String>,
    machine_id: Option<String>,
    issued_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Message {
    success: bool,
    error: Option<String>,
    message: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeactivatedAll {
    success: bool,
    error: Option<String>,
    /// How many devices gave their seats up.
    deactivated: u32,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct LicensePage {
    licenses: Vec<crate::native::wire::LicenseResponse>,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct ProductPage {
    products: Vec<crate::native::ProductResponse>,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// A product's releases, newest version first.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct Releases {
    product_id: String,
    releases: Vec<crate::native::ReleaseResponse>,
}

/// A page of a product's history, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct ProductHistory {
    product_id: String,
    /// Event envelopes (`envelopeVersion` 1): see the README.
    events: Vec<serde_json::Value>,
    next_after: Option<i64>,
}

/// A product as it was at an instant.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProductStateAt {
    at: String,
    version: i64,
    product: crate::native::ProductResponse,
}

/// A page of a tenant's customers, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct CustomerPage {
    customers: Vec<crate::native::CustomerResponse>,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// A page of a customer's history, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct CustomerHistory {
    customer_id: String,
    /// Event envelopes (`envelopeVersion` 1): see the README.
    events: Vec<serde_json::Value>,
    next_after: Option<i64>,
}

/// A customer as it was at an instant.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CustomerStateAt {
    at: String,
    version: i64,
    customer: crate::native::CustomerResponse,
}

/// A page of a customer's licenses, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct CustomerLicenses {
    customer_id: String,
    licenses: Vec<crate::native::wire::LicenseResponse>,
    /// The `after` of the next page; null on the last.
    next_after: Option<String>,
}

/// A page of a license's history, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct History {
    license_id: String,
    /// Event envelopes (`envelopeVersion` 1): see the README.
    events: Vec<serde_json::Value>,
    next_after: Option<i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StateAt {
    at: String,
    version: i64,
    license: crate::native::wire::LicenseResponse,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct TenantCreated {
    id: String,
    name: String,
    /// The tenant's first admin key, shown this once.
    admin_key: String,
    admin_key_id: String,
    admin_user_id: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct KeyIssued {
    id: String,
    /// The key itself, shown this once.
    key: String,
    /// admin, user, client or system.
    role: String,
    /// Absent for a system key.
    user_id: Option<String>,
    name: String,
    /// A system key: the one it replaced, which no longer works.
    replaced_key_id: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct KeyListed {
    id: String,
    role: String,
    user_id: String,
    name: String,
    created_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct TenantSettings {
    tenant_id: String,
    require_client_key: bool,
    /// Percent of a license's seats whose crossing sends
    /// `license.usage_threshold`.
    usage_threshold_percent: u32,
}

/// An Ed25519 public key as a JWK (RFC 8037).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    alg: String,
    #[schema(rename = "use")]
    use_: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct SigningKey {
    kid: String,
    algorithm: String,
    /// The raw public key, base64url.
    public_key: String,
    /// The same 32 bytes as 64 hex characters, as Keygen's client
    /// libraries take it.
    public_key_hex: String,
    created_at: String,
    retired_at: Option<String>,
    /// A retired key stays published (and what it signed verifies) until
    /// then.
    published_until: Option<String>,
    current: bool,
    jwk: Jwk,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct AuditPublicKey {
    algorithm: String,
    public_key: String,
}

/// A tenant's anomaly settings (GET and the answer to PATCH).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct AnomalySettings {
    /// record (default) or suspend (also suspend the license).
    action: String,
    license_hopping: HoppingSettings,
    unusual_activation_pattern: NetworkSettings,
    excessive_heartbeats: CallRateSettings,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct HoppingSettings {
    enabled: bool,
    /// More moves than this within the window is an anomaly (default 3).
    max_moves: u32,
    /// Default 86400.
    window_secs: u32,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct NetworkSettings {
    enabled: bool,
    /// More distinct networks (IPv4 /24, IPv6 /48) than this within the window (default 5).
    max_networks: u32,
    /// Default 86400.
    window_secs: u32,
    tenant_surge: SurgeSettings,
}

/// The tenant-wide form: more activations in one UTC hour than both
/// `minActivations` and `factor` times the tenant's hourly average over
/// the `trailingHours` before it.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct SurgeSettings {
    enabled: bool,
    /// Default 10, between 2 and 1000.
    factor: u32,
    /// Default 50.
    min_activations: u32,
    /// Default 168, at most 720.
    trailing_hours: u32,
    /// Hours of history a tenant needs before it is judged (default 24).
    min_history_hours: u32,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct CallRateSettings {
    enabled: bool,
    /// Validate and heartbeat calls a device may make per window (default 2).
    max_calls_per_window: u32,
    /// Default 60, at most 3600.
    window_secs: u32,
    /// Consecutive windows over the allowance that make an anomaly (default 5).
    sustained_windows: u32,
}

/// Any part of the settings, nested as they are.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct AnomalySettingsPatch {
    action: Option<String>,
    license_hopping: Option<serde_json::Value>,
    unusual_activation_pattern: Option<serde_json::Value>,
    excessive_heartbeats: Option<serde_json::Value>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct AnomalyEvidence {
    /// The log events that make up the finding, oldest first.
    event_ids: Vec<String>,
    /// Moves, networks, or consecutive windows over the allowance.
    count: u32,
    /// The most allowed.
    threshold: u32,
    window_started_at: String,
    window_ended_at: String,
    addresses: Vec<String>,
    /// Keyed machine hashes.
    machines: Vec<String>,
    /// The tenant's average activations per hour before the hour, rounded
    /// up; set only on the tenant-wide form of an unusual activation pattern.
    trailing_per_hour: Option<u32>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct AnomalyRecord {
    id: String,
    /// license_hopping, unusual_activation_pattern or excessive_heartbeats.
    r#type: String,
    license_id: String,
    tenant_id: String,
    evidence: AnomalyEvidence,
    detected_at: String,
    /// The AnomalyDetected event.
    event_id: String,
    resolved: bool,
    resolved_at: Option<String>,
    /// The API key that resolved it.
    resolved_by: Option<String>,
    resolution_note: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct AnomalyPage {
    anomalies: Vec<AnomalyRecord>,
    /// Pass as `before` for the next page; null on the last.
    next_before: Option<String>,
}

/// Seed 003's shape.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnomalyStats {
    total_anomalies: i64,
    unresolved: i64,
    by_type: std::collections::BTreeMap<String, i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    id: String,
    url: String,
    description: String,
    /// Event names, prefixes (`license.*`) or `*`.
    events: Vec<String>,
    enabled: bool,
    /// manual, gone (it answered 410) or failing.
    disabled_reason: Option<String>,
    /// Since when every attempt failed, if the last one did.
    failing_since: Option<String>,
    created_at: String,
    updated_at: String,
    /// keyledger or v2-server.
    payload_format: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct WebhookCreated {
    id: String,
    url: String,
    description: String,
    events: Vec<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    failing_since: Option<String>,
    created_at: String,
    updated_at: String,
    payload_format: String,
    /// `whsec_` and base64 of 32 random bytes: shown this once.
    secret: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookList {
    webhooks: Vec<WebhookEndpoint>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct WebhookSecret {
    id: String,
    secret: String,
    previous_secret_signs_until: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    attempt: i64,
    attempted_at: String,
    /// None when no answer came (timeout, connection error).
    status_code: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
    /// The first 2 KiB of the answer.
    response_body: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct Delivery {
    id: String,
    /// The `webhook-id` header of every attempt: the event's id.
    webhook_id: String,
    event: String,
    /// pending, succeeded or failed.
    status: String,
    attempt_count: i64,
    next_attempt_at: Option<String>,
    created_at: String,
    updated_at: String,
    attempts: Vec<DeliveryAttempt>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct DeliveryPage {
    deliveries: Vec<Delivery>,
    next_after: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct DeliveryQueued {
    delivery_id: String,
    status: String,
}
