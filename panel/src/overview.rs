//! The overview: the tenant's live figures (from the validation view, as
//! the V2 dialect's live statistics), its unresolved anomalies and the
//! background consumers that are down or behind.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use keyledger_app::anomalies::AnomalyFilter;
use keyledger_app::usage::{buckets, Hour};
use keyledger_http::state::AppState;
use maud::{html, Markup};

use crate::charts::{bars, Bar};
use crate::layout::{html_response, page, problem, unavailable};
use crate::session::Signed;

/// Anomalies listed at most.
const ANOMALIES: i64 = 20;

pub async fn page_handler(State(state): State<AppState>, signed: Signed) -> Response {
    let tenant_id = signed.session.tenant_id.as_str();
    let now = Utc::now();
    let figures = state.client.live_figures(tenant_id, now).await;
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
    let charts = match usage_charts(&state, tenant_id, now).await {
        Ok(charts) => charts,
        Err(error) => return unavailable(&signed.config, "Reading the usage", &error),
    };
    let config = &signed.config;
    let content = html! {
        section aria-labelledby="figures" {
            h2 #figures { "Now" }
            dl.figures {
                div { dt { "Licenses" } dd { (figures.licenses) } }
                div { dt { "Usable now" } dd { (figures.usable) } }
                div { dt { "Activations" } dd { (figures.activations) } }
                div { dt { "Active sessions" } dd { (figures.active_sessions) } }
                div { dt { "Heartbeats in the last minute" } dd { (figures.heartbeats_last_minute) } }
            }
        }
        section aria-labelledby="usage" {
            h2 #usage { "Use" }
            div.charts { (charts) }
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

/// Activations and validations over the last day (by hour) and the last
/// month (by day), from the usage the client calls count.
async fn usage_charts(
    state: &AppState,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<Markup, Box<dyn std::error::Error + Send + Sync>> {
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;
    let from = (now - chrono::Duration::days(30)).timestamp().div_euclid(DAY) * DAY;
    let hours = state.usage.hours(tenant_id, from).await?;
    let by_hour = buckets(&hours, now, HOUR, 24);
    let by_day = buckets(&hours, now, DAY, 30);
    let label = |start: i64, format: &str| {
        DateTime::from_timestamp(start, 0).map(|at| at.format(format).to_string()).unwrap_or_default()
    };
    let series = |buckets: &[Hour], format: &str, value: fn(&Hour) -> i64| -> Vec<Bar> {
        buckets.iter().map(|bucket| Bar { label: label(bucket.start, format), value: value(bucket) }).collect()
    };
    let activations = |hour: &Hour| hour.activations;
    let validations = |hour: &Hour| hour.validations;
    Ok(html! {
        (bars("activations-day", "Activations, last 24 hours (UTC)", &series(&by_hour, "%H:00", activations)))
        (bars("validations-day", "Validations, last 24 hours (UTC)", &series(&by_hour, "%H:00", validations)))
        (bars("activations-month", "Activations, last 30 days", &series(&by_day, "%b %d", activations)))
        (bars("validations-month", "Validations, last 30 days", &series(&by_day, "%b %d", validations)))
    })
}
