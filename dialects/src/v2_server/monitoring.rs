//! The V2 License Server's monitoring and statistics: active sessions,
//! live statistics, anomaly statistics, and the read-only analytics
//! token that these (and a customer's quick statistics) also accept.

use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use chrono::Utc;
use keyledger_app::anomalies::AnomalyFilter;
use keyledger_domain::AnomalyKind;
use serde_json::{json, Value};

use super::SystemCaller;
use keyledger_http::auth::Role;
use keyledger_http::dialect::answer;
use keyledger_http::error::ApiError;
use keyledger_http::instant;
use keyledger_http::state::AppState;
use utoipa_axum::routes;

/// Unresolved anomalies `live-stats` lists at most.
const ALERTS: i64 = 50;

pub fn routes() -> keyledger_http::Routes {
    keyledger_http::Routes::new()
        .add(routes!(active_count))
        .add(routes!(live_stats))
        .add(routes!(anomaly_stats))
        .add(routes!(auth_token))
        .add(routes!(lead_stats))
}

/// Activities this recent count as recent.
const RECENT_DAYS: i64 = 30;

#[utoipa::path(
    get,
    path = "/leads/api/stats",
    tag = "v2-server",
    operation_id = "v2_server_lead_stats",
    summary = "Lead statistics: institutions, contacts, activities of the last 30 days, the share converted, by type",
    responses((status = 200, description = "{total_institutions, total_contacts, recent_activities, conversion_rate, by_type}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []), ("bearer" = []))
)]
async fn lead_stats(State(state): State<AppState>, caller: Result<StatsCaller, ApiError>) -> Response {
    answer(
        async {
            let caller = caller?;
            let leads = crate::native::leads::tenant_leads(&state, caller.tenant()?).await?;
            let since = Utc::now() - chrono::Duration::days(RECENT_DAYS);
            let contacts: usize = leads.iter().map(|lead| lead.contacts.len()).sum();
            let recent = leads.iter().flat_map(|lead| &lead.activities).filter(|a| a.at >= since).count();
            let converted = leads.iter().filter(|lead| lead.converted_to.is_some()).count();
            let rate =
                if leads.is_empty() { 0.0 } else { (converted as f64 * 1000.0 / leads.len() as f64).round() / 10.0 };
            let mut by_type = serde_json::Map::new();
            for lead in &leads {
                let count = by_type.entry(lead.r#type.clone()).or_insert(json!(0));
                *count = json!(count.as_u64().unwrap_or(0) + 1);
            }
            Ok(json!({
                "total_institutions": leads.len(),
                "total_contacts": contacts,
                "recent_activities": recent,
                "conversion_rate": rate,
                "by_type": by_type,
            }))
        }
        .await,
    )
}

/// Whose statistics a caller may read.
pub(super) enum Scope {
    Tenant(String),
    /// The operator: every tenant's (anomaly statistics only).
    All,
}

/// The caller of a statistics endpoint: the tenant's system key or an
/// admin key (`X-API-Key` or `Authorization: Bearer`), the tenant's
/// analytics token (`Authorization: Bearer eyJ…`), or the operator.
pub(super) struct StatsCaller(pub(super) Scope);

impl StatsCaller {
    pub(super) fn tenant(&self) -> Result<&str, ApiError> {
        match &self.0 {
            Scope::Tenant(tenant_id) => Ok(tenant_id),
            Scope::All => Err(ApiError::forbidden("This needs a tenant's key or analytics token")),
        }
    }
}

impl FromRequestParts<AppState> for StatsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::unauthorized("Invalid or missing API key");
        let presented = super::presented_credential(parts).ok_or_else(invalid)?;
        if presented.starts_with("eyJ") {
            let tenant = state.analytics.verify(&presented, Utc::now()).await.map_err(ApiError::internal)?;
            return tenant.map(|tenant| StatsCaller(Scope::Tenant(tenant))).ok_or_else(invalid);
        }
        let caller = state.auth.authenticate(&presented).await.map_err(|_| invalid())?;
        match (caller.role, caller.tenant_id) {
            (Role::Operator, _) => Ok(StatsCaller(Scope::All)),
            (Role::System | Role::Admin, Some(tenant)) => Ok(StatsCaller(Scope::Tenant(tenant))),
            _ => {
                Err(ApiError::forbidden("This needs the tenant's system key, a tenant admin key or an analytics token"))
            }
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/sessions/active-count",
    tag = "v2-server",
    operation_id = "v2_server_active_count",
    summary = "Devices seen within the heartbeat window",
    responses((status = 200, description = "{count}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []), ("bearer" = []))
)]
async fn active_count(State(state): State<AppState>, caller: Result<StatsCaller, ApiError>) -> Response {
    answer(
        async {
            let caller = caller?;
            Ok(json!({ "count": state.client.live_figures(caller.tenant()?, Utc::now()).await.active_sessions }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/monitoring/live-stats",
    tag = "v2-server",
    operation_id = "v2_server_live_stats",
    summary = "Live statistics and alerts (unhealthy background consumers and unresolved anomalies, newest first)",
    responses((status = 200, description = "{timestamp, metrics, alerts}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []), ("bearer" = []))
)]
async fn live_stats(State(state): State<AppState>, caller: Result<StatsCaller, ApiError>) -> Response {
    answer(
        async {
            let caller = caller?;
            let tenant_id = caller.tenant()?;
            let now = Utc::now();
            let figures = state.client.live_figures(tenant_id, now).await;
            let filter = AnomalyFilter { resolved: Some(false), limit: ALERTS, ..AnomalyFilter::default() };
            let anomalies =
                state.anomaly_settings.store().list(Some(tenant_id), &filter).await.map_err(ApiError::internal)?;
            let consumers = state.consumer_health.unhealthy().await.map_err(ApiError::internal)?;
            let mut alerts: Vec<(String, Value)> = consumers
                .iter()
                .map(|consumer| {
                    let at = instant(consumer.since.unwrap_or(now));
                    let message = format!("Background consumer {} is unhealthy: {}", consumer.name, consumer.reason);
                    (at.clone(), json!({ "type": "error", "message": message, "timestamp": at }))
                })
                .collect();
            alerts.extend(anomalies.iter().map(|anomaly| {
                let message = format!("Anomaly {} on license {}", anomaly.kind, anomaly.license_id);
                let alert = json!({ "type": "warning", "message": message, "timestamp": anomaly.detected_at });
                (anomaly.detected_at.clone(), alert)
            }));
            // Newest first. Both times are RFC 3339 in UTC: text order is
            // time order, near enough for a list of alerts.
            alerts.sort_by(|a, b| b.0.cmp(&a.0));
            alerts.truncate(ALERTS as usize);
            let alerts: Vec<Value> = alerts.into_iter().map(|(_, alert)| alert).collect();
            Ok(json!({
                "timestamp": instant(now),
                "metrics": {
                    "active_licenses": figures.usable,
                    "total_activations": figures.activations,
                    "active_sessions": figures.active_sessions,
                    "heartbeats_per_minute": figures.heartbeats_last_minute,
                },
                "alerts": alerts,
            }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/monitoring/anomaly-stats",
    tag = "v2-server",
    operation_id = "v2_server_anomaly_stats",
    summary = "Anomaly statistics: the tenant's, or every tenant's for the operator",
    responses((status = 200, description = "{total_anomalies, unresolved, by_type}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []), ("bearer" = []))
)]
async fn anomaly_stats(State(state): State<AppState>, caller: Result<StatsCaller, ApiError>) -> Response {
    answer(
        async {
            let StatsCaller(scope) = caller?;
            let tenant_id = match &scope {
                Scope::Tenant(tenant_id) => Some(tenant_id.as_str()),
                Scope::All => None,
            };
            let stats = state.anomaly_settings.store().stats(tenant_id).await.map_err(ApiError::internal)?;
            let mut by_type = serde_json::Map::new();
            for kind in AnomalyKind::ALL {
                by_type.insert(kind.to_string(), json!(stats.by_type.get(kind.as_str()).copied().unwrap_or(0)));
            }
            Ok(json!({ "total_anomalies": stats.total, "unresolved": stats.unresolved, "by_type": by_type }))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/api/admin/license/auth-token",
    tag = "v2-server",
    operation_id = "v2_server_auth_token",
    summary = "A read-only analytics token for the statistics endpoints, valid for an hour",
    responses((status = 200, description = "{token, expires_at}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn auth_token(State(state): State<AppState>, caller: Result<SystemCaller, ApiError>) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let (tenant_id, _) = caller.tenant()?;
            let (token, expires) = state.analytics.issue(tenant_id, Utc::now()).await.map_err(ApiError::internal)?;
            Ok(json!({ "token": token, "expires_at": instant(expires) }))
        }
        .await,
    )
}
