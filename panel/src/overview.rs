//! The overview: the tenant's live figures (from the validation view, as
//! the V2 dialect's live statistics), its unresolved anomalies and the
//! background consumers that are down or behind.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use keyledger_app::anomalies::AnomalyFilter;
use keyledger_http::state::AppState;
use maud::html;

use crate::layout::{html_response, page, problem};
use crate::session::Signed;

/// Anomalies listed at most.
const ANOMALIES: i64 = 20;

pub async fn page_handler(State(state): State<AppState>, signed: Signed) -> Response {
    let tenant_id = signed.session.tenant_id.as_str();
    let now = Utc::now();
    let licenses = state.client.tenant_licenses_where(tenant_id, |license| !license.deleted);
    let active = licenses.iter().filter(|license| license.ensure_usable(now).is_ok()).count();
    let activations: usize = licenses.iter().map(|license| license.devices.len()).sum();
    let minute_ago = now - chrono::Duration::minutes(1);
    let heartbeats = licenses
        .iter()
        .flat_map(|license| &license.devices)
        .filter(|device| device.last_heartbeat_at >= minute_ago)
        .count();
    let filter = AnomalyFilter { resolved: Some(false), limit: ANOMALIES, ..AnomalyFilter::default() };
    let anomalies = match state.anomaly_settings.store().list(Some(tenant_id), &filter).await {
        Ok(anomalies) => anomalies,
        Err(error) => {
            tracing::error!(error = %error, "panel: listing anomalies failed");
            return problem(&signed.config, StatusCode::SERVICE_UNAVAILABLE, "The overview can't be read just now.");
        }
    };
    let consumers = state.consumer_health.unhealthy().await.unwrap_or_else(|error| {
        tracing::warn!(error = %error, "panel: reading the consumers' health failed");
        Vec::new()
    });
    let config = &signed.config;
    let content = html! {
        section aria-labelledby="figures" {
            h2 #figures { "Now" }
            dl.figures {
                div { dt { "Licenses" } dd { (licenses.len()) } }
                div { dt { "Usable now" } dd { (active) } }
                div { dt { "Activations" } dd { (activations) } }
                div { dt { "Heartbeats in the last minute" } dd { (heartbeats) } }
            }
        }
        section aria-labelledby="anomalies" {
            h2 #anomalies { "Unresolved anomalies" }
            @if anomalies.is_empty() {
                p { "None." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th scope="col" { "Detected" } th scope="col" { "Kind" } th scope="col" { "License" } } }
                        tbody {
                            @for anomaly in &anomalies {
                                tr {
                                    td { (anomaly.detected_at) }
                                    td { (anomaly.kind) }
                                    td { a href=(config.path(&format!("/licenses/{}", anomaly.license_id))) { (anomaly.license_id) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="consumers" {
            h2 #consumers { "Background consumers" }
            @if consumers.is_empty() {
                p { "All healthy." }
            } @else {
                ul.alerts {
                    @for consumer in &consumers {
                        li role="alert" { strong { (consumer.name) } ": " (consumer.reason) }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Overview", "overview", content))
}
