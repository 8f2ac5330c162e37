//! Keys: the tenant's API keys (a new one shown once, revoke), its system
//! key (the V2 License Server's `X-API-Key`: issued anew, shown once,
//! replacing the old), and its signing keys (rotate; retire one that no
//! longer signs). Only admins see
//! this page's forms; a viewer sees the lists.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use keyledger_app::signing::Retirement;
use keyledger_app::tenancy::{revoke_api_key, Revocation, Role};
use keyledger_domain::check_display_text;
use keyledger_http::extract::RequestContext;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::html;
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{panel_context, Bare, Change, Signed};

/// Longest key name, as the API's.
const MAX_NAME: usize = 200;

pub async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let tenant_id = signed.session.tenant_id.as_str();
    let api_keys = match state.tenancy.list_keys(tenant_id).await {
        Ok(keys) => keys,
        Err(error) => return unavailable(&signed.config, "Reading or changing the keys", &error),
    };
    let signing = match state.directory.list(tenant_id).await {
        Ok(keys) => keys,
        Err(error) => return unavailable(&signed.config, "Reading or changing the keys", &error),
    };
    let system_key = match state.system_keys.current_id(tenant_id).await {
        Ok(id) => id,
        Err(error) => return unavailable(&signed.config, "Reading or changing the keys", &error),
    };
    let current = signing.iter().find(|key| key.retired_at.is_none()).map(|key| key.kid.clone());
    let config = &signed.config;
    let post = |path: String, label: String, aria: String| {
        html! {
            form.inline method="post" action=(config.path(&path)) {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                button type="submit" aria-label=(aria) { (label) }
            }
        }
    };
    let content = html! {
        section aria-labelledby="api-keys" {
            h2 #api-keys { "API keys" }
            div.scroll {
                table #api-key-list {
                    caption.visually-hidden { "API keys" }
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Role" } th scope="col" { "Name" } th scope="col" { "Created" } @if signed.can_change() { th scope="col" { "Actions" } } } }
                    tbody {
                        @for key in &api_keys {
                            tr {
                                td { code { (key.id) } }
                                td { (key.role.as_str()) }
                                td { (key.name) }
                                td { (key.created_at) }
                                @if signed.can_change() {
                                    td { (post(format!("/keys/api/{}/revoke", key.id), "Revoke".to_owned(), format!("Revoke {}", key.name))) }
                                }
                            }
                        }
                    }
                }
            }
            @if signed.can_change() {
                form.filters method="post" action=(config.path("/keys/api")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div {
                        label for="role" { "Role" }
                        select #role name="role" {
                            option value="user" { "user (issues licenses)" }
                            option value="client" { "client (the software's own key)" }
                            option value="admin" { "admin" }
                        }
                    }
                    div { label for="key-name" { "Name" } input #key-name type="text" name="name" maxlength="200"; }
                    button type="submit" { "Issue key" }
                }
            }
        }
        section aria-labelledby="signing-keys" {
            h2 #signing-keys { "Signing keys" }
            p { "Ed25519 keys that sign this tenant's answers and offline tokens. The newest unretired key signs; older ones keep verifying until they are retired." }
            div.scroll {
                table #signing-key-list {
                    caption.visually-hidden { "Signing keys" }
                    thead { tr { th scope="col" { "Key id" } th scope="col" { "Created" } th scope="col" { "State" } @if signed.can_change() { th scope="col" { "Actions" } } } }
                    tbody {
                        @for key in &signing {
                            @let is_current = Some(&key.kid) == current.as_ref();
                            tr {
                                td { code { (key.kid) } }
                                td { (key.created_at) }
                                td {
                                    @if is_current { "signing" }
                                    @else if let Some(retired) = &key.retired_at { "retired " (retired) }
                                    @else { "verifies only" }
                                }
                                @if signed.can_change() {
                                    td {
                                        @if !is_current && key.retired_at.is_none() {
                                            (post(format!("/keys/signing/{}/retire", key.kid), "Retire".to_owned(), format!("Retire key {}", key.kid)))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if signed.can_change() {
                (post("/keys/signing/rotate".to_owned(), "Rotate the signing key".to_owned(), "Rotate the signing key".to_owned()))
            }
        }
        section aria-labelledby="system-key" {
            h2 #system-key { "System key" }
            p #system-key-id {
                @match &system_key {
                    Some(id) => { "The tenant's system key is " code { (id) } "." }
                    None => { "The tenant has no system key." }
                }
            }
            @if signed.can_change() {
                (post("/keys/system".to_owned(), "Issue a new system key".to_owned(), "Issue a new system key, replacing the current one".to_owned()))
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Keys", "keys", content))
}

/// Issues the tenant's system key anew: the old one stops working.
pub async fn issue_system(
    State(state): State<AppState>,
    context: RequestContext,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let config = &signed.config;
    let tenant_id = signed.session.tenant_id.as_str();
    let metadata = event_metadata(&panel_context(&context), Some(&signed.caller()), tenant_id, Utc::now());
    let issued = match state.system_keys.issue(tenant_id, &metadata).await {
        Ok(issued) => issued,
        Err(error) => return unavailable(config, "Issuing the system key", &error),
    };
    // Every process drops its cache of keys: the replaced key stops
    // working here at once, elsewhere within the directory's poll.
    if let Err(error) = state.directory.changed().await {
        return unavailable(config, "Issuing the system key", &error);
    }
    tracing::info!(tenant_id, key_id = %issued.id, "system key issued in the panel");
    let content = html! {
        p role="status" { "The new system key, shown once: copy it now. keyledger keeps only its hash, and the previous key no longer works." }
        p { code #new-system-key { (issued.key) } }
        p { a href=(config.path("/keys")) { "Back to the keys" } }
    };
    html_response(StatusCode::CREATED, page(&signed, "New system key", "keys", content))
}

#[derive(Deserialize, Default)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    name: String,
}

form_token!(KeyForm);

pub async fn issue(State(state): State<AppState>, Change { signed, form }: Change<KeyForm>) -> Response {
    let config = &signed.config;
    let role = match form.role.as_str() {
        "admin" => Role::Admin,
        "user" => Role::User,
        "client" => Role::Client,
        _ => return problem(config, StatusCode::BAD_REQUEST, "Role: admin, user or client."),
    };
    let name = form.name.trim();
    if name.chars().count() > MAX_NAME || (!name.is_empty() && check_display_text(name).is_err()) {
        return problem(config, StatusCode::BAD_REQUEST, "Name: at most 200 characters of text.");
    }
    let name = if name.is_empty() { format!("{} key", role.as_str()) } else { name.to_owned() };
    let key = match state.tenancy.create_key(&signed.session.tenant_id, role, &name).await {
        Ok(key) => key,
        Err(error) => return unavailable(&signed.config, "Reading or changing the keys", &error),
    };
    tracing::info!(tenant_id = %signed.session.tenant_id, key_id = %key.id, role = role.as_str(), "API key issued in the panel");
    let content = html! {
        p role="status" { "The new " (role.as_str()) " key, shown once: copy it now. keyledger keeps only its hash." }
        p { code #new-key { (key.key) } }
        p { a href=(config.path("/keys")) { "Back to the keys" } }
    };
    html_response(StatusCode::OK, page(&signed, "New API key", "keys", content))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let config = &signed.config;
    match revoke_api_key(&state.tenancy, &state.directory, &signed.session.tenant_id, &key_id).await {
        Ok(Revocation::Revoked) => Redirect::to(&config.path("/keys")).into_response(),
        Ok(Revocation::NotFound) => problem(config, StatusCode::NOT_FOUND, "There is no such key."),
        Ok(Revocation::LastAdmin) => problem(
            config,
            StatusCode::CONFLICT,
            "This is the tenant's last admin key; issue another admin key before revoking it.",
        ),
        Err(error) => unavailable(&signed.config, "Reading or changing the keys", &error),
    }
}

pub async fn rotate(State(state): State<AppState>, Change { signed, .. }: Change<Bare>) -> Response {
    match state.directory.rotate(&signed.session.tenant_id).await {
        Ok(key) => {
            tracing::info!(tenant_id = %signed.session.tenant_id, kid = %key.kid, "signing key rotated in the panel");
            Redirect::to(&signed.config.path("/keys")).into_response()
        }
        Err(error) => unavailable(&signed.config, "Reading or changing the keys", &error),
    }
}

pub async fn retire(
    State(state): State<AppState>,
    Path(kid): Path<String>,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let config = &signed.config;
    // What it signed verifies for as long as a token lasts.
    let grace = state.client.token_ttl().to_std().unwrap_or_default();
    match state.directory.retire(&signed.session.tenant_id, &kid, grace).await {
        Ok(Retirement::Retired) => Redirect::to(&config.path("/keys")).into_response(),
        Ok(Retirement::NotFound) => problem(config, StatusCode::NOT_FOUND, "There is no such unretired signing key."),
        Ok(Retirement::Current) => {
            problem(config, StatusCode::CONFLICT, "This key signs now; rotate to a new one before retiring it.")
        }
        Err(error) => unavailable(&signed.config, "Reading or changing the keys", &error),
    }
}
