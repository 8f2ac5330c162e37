//! Webhooks: the tenant's endpoints; an endpoint's delivery log with
//! each attempt's status and response; redeliver, send a test, rotate the
//! secret (the new secret shown once); create an endpoint (its secret
//! shown once), switch it off and on, delete it. Fields are checked as the
//! API checks them ([`keyledger_app::webhooks::fields`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use keyledger_app::webhooks::{
    fields, DeliveryFilter, Endpoint, EndpointPatch, NewEndpoint, PayloadFormat, Redelivery,
};
use keyledger_http::state::AppState;
use maud::html;
use serde::Deserialize;
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
            p { "No webhook endpoint yet." }
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
        @if signed.can_change() {
            section aria-labelledby="new-webhook" {
                h2 #new-webhook { "New endpoint" }
                form.filters method="post" action=(config.path("/webhooks")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="url" { "URL" } input #url type="url" name="url" required placeholder="https://example.com/hooks"; }
                    div { label for="events" { "Events (comma-separated)" } input #events type="text" name="events" value="*"; }
                    div { label for="description" { "Description" } input #description type="text" name="description" maxlength="500"; }
                    div {
                        label for="format" { "Payload" }
                        select #format name="format" {
                            option value="keyledger" { "keyledger" }
                            option value="v2-server" { "V2 License Server" }
                        }
                    }
                    button type="submit" { "Create endpoint" }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Webhooks", "webhooks", content))
}

#[derive(Deserialize, Default)]
pub struct EndpointForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    events: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    format: String,
    /// A deletion: `yes` once confirmed on the page that asks.
    #[serde(default)]
    confirm: String,
}

form_token!(EndpointForm);

/// Creates an endpoint; its signing secret is shown once.
pub async fn create(State(state): State<AppState>, Change { signed, form }: Change<EndpointForm>) -> Response {
    let config = &signed.config;
    let events: Vec<String> =
        form.events.split(',').map(str::trim).filter(|event| !event.is_empty()).map(str::to_owned).collect();
    let payload_format = match form.format.trim() {
        "" => PayloadFormat::default(),
        raw => match PayloadFormat::parse(raw) {
            Some(format) => format,
            None => return problem(config, StatusCode::BAD_REQUEST, "Payload: keyledger or V2 License Server."),
        },
    };
    let checked = async {
        Ok::<_, fields::FieldError>(NewEndpoint {
            url: fields::checked_url(form.url.trim(), state.webhooks.allow_private).await?,
            events: fields::checked_events(events)?,
            description: fields::checked_description(form.description.trim().to_owned())?,
            enabled: true,
            payload_format,
        })
    };
    let new = match checked.await {
        Ok(new) => new,
        Err(error) => return problem(config, StatusCode::BAD_REQUEST, &format!("{}.", error.message)),
    };
    let max = state.webhooks.max_endpoints;
    match state.webhooks.create(&signed.session.tenant_id, new, max).await {
        Ok(Some((endpoint, secret))) => {
            tracing::info!(webhook = %endpoint.id, "webhook endpoint created in the panel");
            let content = html! {
                p role="status" { "The endpoint " code { (endpoint.url) } " is created. Its signing secret, shown once: keep it where your receiver reads it." }
                p { code #new-secret { (secret) } }
                p { a href=(config.path(&format!("/webhooks/{}", endpoint.id))) { "To the endpoint" } }
            };
            html_response(StatusCode::CREATED, page(&signed, "New webhook endpoint", "webhooks", content))
        }
        Ok(None) => problem(
            config,
            StatusCode::CONFLICT,
            &format!("The tenant has {max} webhook endpoints, the most it may have."),
        ),
        Err(error) => unavailable(config, "Creating the webhook", &error),
    }
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
                @if endpoint.enabled { (action("test", "Send a test")) (action("disable", "Switch off")) }
                @else { (action("enable", "Switch on")) }
                (action("rotate", "Rotate the secret"))
                (action("delete", "Delete"))
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
    Change { signed, form }: Change<EndpointForm>,
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
        "enable" | "disable" => {
            let patch = EndpointPatch { enabled: Some(action == "enable"), ..EndpointPatch::default() };
            match state.webhooks.update(&signed.session.tenant_id, &endpoint.id, patch).await {
                Ok(_) => back(),
                Err(error) => unavailable(&signed.config, "Reading or changing the webhooks", &error),
            }
        }
        "delete" if form.confirm == "yes" => {
            match state.webhooks.delete(&signed.session.tenant_id, &endpoint.id).await {
                Ok(_) => Redirect::to(&config.path("/webhooks")).into_response(),
                Err(error) => unavailable(&signed.config, "Reading or changing the webhooks", &error),
            }
        }
        "delete" => {
            let question = html! {
                "Delete the endpoint " code { (endpoint.url) } "? Its queued deliveries and their log go with it."
            };
            let page = format!("/webhooks/{}", endpoint.id);
            crate::layout::confirm(
                &signed,
                "Delete a webhook endpoint",
                "webhooks",
                question,
                &format!("{page}/delete"),
                "Delete the endpoint",
                &page,
            )
        }
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
