//! Webhooks: the tenant's endpoints; an endpoint's delivery log with
//! each attempt's status and response; redeliver, send a test, rotate the
//! secret (the new secret shown once). Endpoints are created and changed
//! through the API, which checks their URLs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use keyledger_app::webhooks::{DeliveryFilter, Endpoint, Redelivery};
use keyledger_http::state::AppState;
use maud::html;
use serde_json::Value;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{Bare, Change, Signed};

/// Deliveries an endpoint's page shows.
const DELIVERIES: i64 = 50;
/// How long the previous secret keeps signing after a rotation, as the API's.
const ROTATION_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

async fn endpoint(state: &AppState, signed: &Signed, raw: &str) -> Result<Endpoint, Response> {
    let not_found = || problem(&signed.config, StatusCode::NOT_FOUND, "There is no such webhook.");
    let id = uuid::Uuid::parse_str(raw.trim()).map_err(|_| not_found())?.to_string();
    match state.webhooks.get(&signed.session.tenant_id, &id).await {
        Ok(Some(endpoint)) => Ok(endpoint),
        Ok(None) => Err(not_found()),
        Err(error) => Err(unavailable(&signed.config, "Reading or changing the webhooks", &error)),
    }
}

fn state_of(endpoint: &Endpoint) -> String {
    match (&endpoint.disabled_reason, &endpoint.failing_since) {
        (Some(reason), _) => format!("disabled ({reason})"),
        (None, Some(since)) if endpoint.enabled => format!("failing since {since}"),
        _ if endpoint.enabled => "enabled".to_owned(),
        _ => "disabled".to_owned(),
    }
}

pub async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let endpoints = match state.webhooks.list(&signed.session.tenant_id).await {
        Ok(endpoints) => endpoints,
        Err(error) => return unavailable(&signed.config, "Reading or changing the webhooks", &error),
    };
    let config = &signed.config;
    let content = html! {
        @if endpoints.is_empty() {
            p { "No webhook endpoint. Create one with " code { "POST /api/v1/webhooks" } "." }
        } @else {
            div.scroll {
                table #webhooks {
                    caption.visually-hidden { "Webhook endpoints" }
                    thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "State" } th scope="col" { "Created" } } }
                    tbody {
                        @for endpoint in &endpoints {
                            tr {
                                td { a href=(config.path(&format!("/webhooks/{}", endpoint.id))) { (endpoint.url) } }
                                td { (endpoint.events.join(", ")) }
                                td { (state_of(endpoint)) }
                                td { (endpoint.created_at) }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Webhooks", "webhooks", content))
}

fn text<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or_default()
}

pub async fn show(State(state): State<AppState>, signed: Signed, Path(raw): Path<String>) -> Response {
    let endpoint = match endpoint(&state, &signed, &raw).await {
        Ok(endpoint) => endpoint,
        Err(response) => return response,
    };
    let filter = DeliveryFilter { status: None, event: None, after: None, limit: DELIVERIES };
    let deliveries = match state.webhooks.deliveries(&endpoint.id, &filter).await {
        Ok(deliveries) => deliveries,
        Err(error) => return unavailable(&signed.config, "Reading or changing the webhooks", &error),
    };
    let config = &signed.config;
    let action = |path: &str, label: &str| {
        html! {
            form.inline method="post" action=(config.path(&format!("/webhooks/{}/{path}", endpoint.id))) {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                button type="submit" { (label) }
            }
        }
    };
    let content = html! {
        dl.facts {
            div { dt { "URL" } dd { (endpoint.url) } }
            div { dt { "Events" } dd { (endpoint.events.join(", ")) } }
            div { dt { "State" } dd { (state_of(&endpoint)) } }
            div { dt { "Format" } dd { (format!("{:?}", endpoint.payload_format).to_lowercase()) } }
        }
        @if signed.can_change() {
            div.actions {
                @if endpoint.enabled { (action("test", "Send a test")) }
                (action("rotate", "Rotate the secret"))
            }
        }
        h2 { "Deliveries" }
        @if deliveries.is_empty() {
            p role="status" { "No delivery yet." }
        } @else {
            ol #deliveries.timeline {
                @for delivery in &deliveries {
                    li {
                        span.when { (text(delivery, "createdAt")) }
                        " " strong { (text(delivery, "event")) } " — " (text(delivery, "status"))
                        " (webhook-id " code { (text(delivery, "webhookId")) } ")"
                        @if signed.can_change() && text(delivery, "status") != "pending" {
                            " "
                            (action(&format!("deliveries/{}/redeliver", text(delivery, "id")), "Redeliver"))
                        }
                        @if let Some(attempts) = delivery.get("attempts").and_then(Value::as_array) {
                            ul {
                                @for attempt in attempts {
                                    li {
                                        "Attempt " (attempt["attempt"]) " at " (text(attempt, "attemptedAt")) ": "
                                        @match attempt["statusCode"].as_i64() {
                                            Some(code) => { "HTTP " (code) }
                                            None => { (text(attempt, "error")) }
                                        }
                                        " in " (attempt["latencyMs"]) " ms"
                                        @let body = text(attempt, "responseBody");
                                        @if !body.is_empty() { " — " code { (body.chars().take(200).collect::<String>()) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Webhook", "webhooks", content))
}

/// Send a test, rotate the secret, or redeliver one delivery.
pub async fn act(
    State(state): State<AppState>,
    Path((raw, action)): Path<(String, String)>,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let endpoint = match endpoint(&state, &signed, &raw).await {
        Ok(endpoint) => endpoint,
        Err(response) => return response,
    };
    let config = &signed.config;
    let back = || Redirect::to(&config.path(&format!("/webhooks/{}", endpoint.id))).into_response();
    match action.as_str() {
        "test" if !endpoint.enabled => {
            problem(config, StatusCode::CONFLICT, "This webhook is disabled; enable it first.")
        }
        "test" => match state.webhooks.send_test(&signed.session.tenant_id, &endpoint.id).await {
            Ok(_) => back(),
            Err(error) => unavailable(&signed.config, "Reading or changing the webhooks", &error),
        },
        "rotate" => match state.webhooks.rotate_secret(&signed.session.tenant_id, &endpoint.id, ROTATION_OVERLAP).await
        {
            Ok(Some(secret)) => {
                tracing::info!(webhook = %endpoint.id, "webhook secret rotated in the panel");
                let content = html! {
                    p role="status" { "The new signing secret, shown once: keep it where your receiver reads it." }
                    p { code #new-secret { (secret) } }
                    p { "The previous secret keeps signing beside it for 24 hours." }
                    p { a href=(config.path(&format!("/webhooks/{}", endpoint.id))) { "Back to the webhook" } }
                };
                html_response(StatusCode::OK, page(&signed, "New webhook secret", "webhooks", content))
            }
            Ok(None) => problem(config, StatusCode::NOT_FOUND, "There is no such webhook."),
            Err(error) => unavailable(&signed.config, "Reading or changing the webhooks", &error),
        },
        _ => problem(config, StatusCode::NOT_FOUND, "There is no such action."),
    }
}

pub async fn redeliver(
    State(state): State<AppState>,
    Path((raw, delivery)): Path<(String, String)>,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let endpoint = match endpoint(&state, &signed, &raw).await {
        Ok(endpoint) => endpoint,
        Err(response) => return response,
    };
    let config = &signed.config;
    let Ok(delivery) = uuid::Uuid::parse_str(delivery.trim()).map(|id| id.to_string()) else {
        return problem(config, StatusCode::NOT_FOUND, "There is no such delivery.");
    };
    match state.webhooks.redeliver(&endpoint.id, &delivery).await {
        Ok(Redelivery::Queued) => Redirect::to(&config.path(&format!("/webhooks/{}", endpoint.id))).into_response(),
        Ok(Redelivery::NotFound) => problem(config, StatusCode::NOT_FOUND, "There is no such delivery."),
        Ok(Redelivery::InFlight) => problem(
            config,
            StatusCode::CONFLICT,
            "An attempt of this delivery is under way; try again when it is done.",
        ),
        Err(error) => unavailable(&signed.config, "Reading or changing the webhooks", &error),
    }
}
