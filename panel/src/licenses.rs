//! Licenses: the list (search, filters, pages), a license's page (its
//! state, devices updated live, actions, and its history as a timeline
//! with the hash chain checked and the state at any chosen instant), and
//! the actions, each the same license command the API runs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use keyledger_domain::{License, LicenseCommand, LicenseStatus};
use keyledger_eventlog::LoggedEvent;
use keyledger_http::extract::RequestContext;
use keyledger_http::state::AppState;
use keyledger_http::{dates, instant};
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{panel_context, Change, Signed};

/// Licenses a page of the list shows.
const PAGE_SIZE: usize = 50;
/// Events the timeline shows at most.
const TIMELINE: i64 = 1000;

fn status_name(status: LicenseStatus) -> &'static str {
    match status {
        LicenseStatus::Generated => "generated",
        LicenseStatus::Activated => "active",
        LicenseStatus::Suspended => "suspended",
        LicenseStatus::Expired => "expired",
        LicenseStatus::Revoked => "revoked",
    }
}

/// The list's filters, from its query: each checked and named when wrong.
struct Filters {
    q: String,
    status: Option<LicenseStatus>,
    product: Option<String>,
    expiring_days: Option<i64>,
    page: usize,
}

impl Filters {
    fn read(query: &HashMap<String, String>) -> Result<Self, String> {
        let text = |name: &str| query.get(name).map(|value| value.trim()).filter(|value| !value.is_empty());
        let status = match text("status") {
            None => None,
            Some("generated") => Some(LicenseStatus::Generated),
            Some("active") => Some(LicenseStatus::Activated),
            Some("suspended") => Some(LicenseStatus::Suspended),
            Some("expired") => Some(LicenseStatus::Expired),
            Some("revoked") => Some(LicenseStatus::Revoked),
            Some(_) => return Err("status must be generated, active, suspended, expired or revoked".to_owned()),
        };
        let expiring_days = match text("expiring") {
            None => None,
            Some(raw) => Some(
                raw.parse::<i64>()
                    .ok()
                    .filter(|days| (1..=3650).contains(days))
                    .ok_or("expiring must be a number of days from 1 to 3650")?,
            ),
        };
        let page = match text("page") {
            None => 1,
            Some(raw) => {
                raw.parse::<usize>().ok().filter(|page| (1..=100_000).contains(page)).ok_or("page must be 1 or more")?
            }
        };
        let q: String = text("q").unwrap_or_default().chars().take(64).collect();
        Ok(Self { q, status, product: text("product").map(str::to_owned), expiring_days, page })
    }

    fn keeps(&self, license: &License, now: DateTime<Utc>) -> bool {
        if license.deleted || license.license_key.is_none() {
            return false;
        }
        if self.status.is_some_and(|status| license.status_at(now) != status) {
            return false;
        }
        if self
            .product
            .as_deref()
            .is_some_and(|product| license.product_id.as_ref().map(|id| id.as_str()) != Some(product))
        {
            return false;
        }
        if let Some(days) = self.expiring_days {
            let within = now + chrono::Duration::days(days);
            if !license.expires_at.is_some_and(|at| at > now && at <= within) {
                return false;
            }
        }
        true
    }

    /// The query of this list at another page.
    fn at_page(&self, page: usize) -> String {
        let mut pairs = vec![("page", page.to_string())];
        if !self.q.is_empty() {
            pairs.push(("q", self.q.clone()));
        }
        if let Some(status) = self.status {
            pairs.push(("status", status_name(status).to_owned()));
        }
        if let Some(product) = &self.product {
            pairs.push(("product", product.clone()));
        }
        if let Some(days) = self.expiring_days {
            pairs.push(("expiring", days.to_string()));
        }
        pairs.iter().map(|(name, value)| format!("{name}={}", encode(value))).collect::<Vec<_>>().join("&")
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Customers a search of the list matches at most, by name or email.
const MATCHED_CUSTOMERS: i64 = 200;

/// The tenant's licenses a search and the filters keep, in no order. A
/// search matches part of a key, or a customer's name or email (their
/// licenses), as the V2 dialect's global search does.
async fn matching(
    state: &AppState,
    tenant_id: &str,
    filters: &Filters,
    now: DateTime<Utc>,
) -> Result<Vec<Arc<License>>, keyledger_app::aggregates::CatalogError<keyledger_domain::CustomerError>> {
    if filters.q.is_empty() {
        return Ok(state.client.tenant_licenses_where(tenant_id, |license| filters.keeps(license, now)).await);
    }
    let pattern = keyledger_app::customers::search_pattern(&filters.q);
    let customers = state
        .customers
        .page(tenant_id, 0, MATCHED_CUSTOMERS, keyledger_app::customers::SEARCH_FILTER, &pattern)
        .await?;
    let customer_ids: Vec<&str> = customers.iter().map(|customer| customer.record.id.as_str()).collect();
    let key_part = filters.q.to_ascii_uppercase();
    let search = keyledger_projections::Search { tenant_id, key_part: Some(&key_part), customer_ids: &customer_ids };
    let mut found = state.client.search_licenses(&search, |_| false).await;
    found.retain(|license| filters.keeps(license, now));
    Ok(found)
}

/// The `page`th page of `found`, newest first. Only the licenses up to the
/// page's end are sorted: a full sort of 100,000 cost most of the page.
fn newest_page(mut found: Vec<Arc<License>>, page: usize) -> Vec<Arc<License>> {
    let newest_first =
        |a: &Arc<License>, b: &Arc<License>| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id));
    let end = (page * PAGE_SIZE).min(found.len());
    if end == 0 {
        return Vec::new();
    }
    if end < found.len() {
        found.select_nth_unstable_by(end - 1, newest_first);
        found.truncate(end);
    }
    found.sort_unstable_by(newest_first);
    found.split_off((page - 1) * PAGE_SIZE)
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = &signed.config;
    let query = query.map(|Query(query)| query).unwrap_or_default();
    let filters = match Filters::read(&query) {
        Ok(filters) => filters,
        Err(message) => return problem(config, StatusCode::BAD_REQUEST, &message),
    };
    let now = Utc::now();
    let found = match matching(&state, &signed.session.tenant_id, &filters, now).await {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(error = %error, "panel: searching licenses failed");
            return problem(config, StatusCode::SERVICE_UNAVAILABLE, "Licenses can't be searched just now.");
        }
    };
    let total = found.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let shown = newest_page(found, filters.page.min(pages));
    let status_option = |value: &str, label: &str| {
        let selected = filters.status.map(status_name) == Some(value) || (value.is_empty() && filters.status.is_none());
        html! { option value=(value) selected[selected] { (label) } }
    };
    let content = html! {
        form.filters method="get" action=(config.path("/licenses")) {
            div {
                label for="q" { "Key, customer or email contains" }
                input #q type="search" name="q" value=(filters.q);
            }
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    (status_option("", "Any"))
                    (status_option("active", "Active"))
                    (status_option("generated", "Not activated"))
                    (status_option("suspended", "Suspended"))
                    (status_option("expired", "Expired"))
                    (status_option("revoked", "Revoked"))
                }
            }
            div {
                label for="product" { "Product id" }
                input #product type="text" name="product" value=(filters.product.as_deref().unwrap_or_default());
            }
            div {
                label for="expiring" { "Expiring within (days)" }
                input #expiring type="number" min="1" max="3650" name="expiring"
                    value=(filters.expiring_days.map(|days| days.to_string()).unwrap_or_default());
            }
            button type="submit" { "Filter" }
        }
        p role="status" { (total) " licenses" @if pages > 1 { ", page " (filters.page) " of " (pages) } "." }
        form #bulk method="post" action=(config.path("/licenses/bulk")) {
        @if signed.can_change() {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            fieldset.actions {
                legend { "With the licenses ticked" }
                button type="submit" name="action" value="activate" { "Activate" }
                " "
                button type="submit" name="action" value="deactivate" { "Deactivate" }
                " "
                button type="submit" name="action" value="delete" { "Delete" }
            }
        }
        div.scroll {
            table {
                caption.visually-hidden { "Licenses" }
                thead {
                    tr {
                        @if signed.can_change() { th scope="col" { span.visually-hidden { "Select" } } }
                        th scope="col" { "Key" }
                        th scope="col" { "Status" }
                        th scope="col" { "Seats" }
                        th scope="col" { "Expires" }
                        th scope="col" { "Created" }
                    }
                }
                tbody {
                    @for license in &shown {
                        @let key = license.license_key.as_ref().map(|key| key.as_str()).unwrap_or("—");
                        tr {
                            @if signed.can_change() {
                                td { input type="checkbox" name="id" value=(license.id.as_str()) aria-label=(format!("Select {key}")); }
                            }
                            td {
                                a href=(config.path(&format!("/licenses/{}", license.id))) {
                                    code { (key) }
                                }
                            }
                            td { (status_name(license.status_at(now))) }
                            td { (license.devices.len()) " / " (license.max_activations.get()) }
                            td { (license.expires_at.map(instant).unwrap_or_else(|| "never".to_owned())) }
                            td { (license.created_at.map(instant).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        }
        nav.pages aria-label="Pages" {
            @if filters.page > 1 {
                a rel="prev" href=(format!("{}?{}", config.path("/licenses"), filters.at_page(filters.page - 1))) { "Newer" }
            }
            @if filters.page < pages {
                a rel="next" href=(format!("{}?{}", config.path("/licenses"), filters.at_page(filters.page + 1))) { "Older" }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Licenses", "licenses", content))
}

/// Whether the panel of `tenant_id` shows the license: its own, existing
/// and not deleted.
pub(crate) fn shown_in(license: &License, tenant_id: &str) -> bool {
    license.tenant_id == tenant_id && license.exists() && !license.deleted
}

/// The tenant's license with this id, read from the log; anything else
/// (another tenant's, deleted, malformed) is not found.
pub(crate) async fn tenant_license(state: &AppState, signed: &Signed, raw_id: &str) -> Result<License, Response> {
    let not_found = || problem(&signed.config, StatusCode::NOT_FOUND, "There is no such license.");
    let id = uuid::Uuid::parse_str(raw_id.trim()).map_err(|_| not_found())?.to_string();
    match state.licenses.load(&id).await {
        Ok((license, _, _)) if shown_in(&license, &signed.session.tenant_id) => Ok(license),
        Ok(_) => Err(not_found()),
        Err(error) => {
            tracing::error!(error = %error, "panel: loading a license failed");
            Err(problem(&signed.config, StatusCode::SERVICE_UNAVAILABLE, "The license can't be read just now."))
        }
    }
}

/// The devices holding seats, as a fragment the page refreshes live.
fn devices(signed: &Signed, license: &License, now: DateTime<Utc>) -> Markup {
    let config = &signed.config;
    let fragment = config.path(&format!("/licenses/{}/devices", license.id));
    let device_action = |device: &str, action: &str, label: &str, named: &str| {
        html! {
            form.inline method="post" action=(config.path(&format!("/licenses/{}/devices/{device}/{action}", license.id))) {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                button type="submit" aria-label=(format!("{label} {named}")) { (label) }
            }
        }
    };
    html! {
        div #devices hx-get=(fragment) hx-trigger="every 3s" hx-swap="outerHTML" {
            @if license.devices.is_empty() {
                p { "No device holds a seat." }
            } @else {
                div.scroll {
                    table {
                        caption.visually-hidden { "Devices" }
                        thead {
                            tr {
                                th scope="col" { "Device" }
                                th scope="col" { "Name" }
                                th scope="col" { "Activated" }
                                th scope="col" { "Last seen" }
                                th scope="col" { "Address" }
                                @if signed.can_change() { th scope="col" { "Actions" } }
                            }
                        }
                        tbody {
                            @for device in &license.devices {
                                @let id = device.id(&license.id).to_string();
                                tr {
                                    td { code { (id) } }
                                    td { (device.machine_name.as_str()) }
                                    td { (instant(device.activated_at)) }
                                    td { (instant(device.last_heartbeat_at)) " (" (ago(now - device.last_heartbeat_at)) ")" }
                                    td { (device.details.ip.as_ref().map(|ip| ip.to_string()).unwrap_or_default()) }
                                    @if signed.can_change() {
                                        td {
                                            (device_action(&id, "deactivate", "Deactivate", device.machine_name.as_str()))
                                            " "
                                            (device_action(&id, "block", "Block", device.machine_name.as_str()))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !license.blocked.is_empty() {
                h3 { "Blocked devices" }
                ul #blocked {
                    @for blocked in &license.blocked {
                        @let id = keyledger_domain::device_id(&license.id, &blocked.machine).to_string();
                        li {
                            code { (id) } " blocked " (instant(blocked.blocked_at)) " "
                            @if signed.can_change() {
                                (device_action(&id, "unblock", "Unblock", &id))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn ago(elapsed: chrono::Duration) -> String {
    let secs = elapsed.num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

pub async fn devices_fragment(State(state): State<AppState>, signed: Signed, Path(raw_id): Path<String>) -> Response {
    match tenant_license(&state, &signed, &raw_id).await {
        Ok(license) => html_response(StatusCode::OK, devices(&signed, &license, Utc::now())),
        Err(response) => response,
    }
}

/// Who caused an event, in words, from its metadata.
fn actor(event: &LoggedEvent) -> String {
    let field = |name: &str| event.metadata.get(name).and_then(|value| value.as_str()).unwrap_or_default().to_owned();
    let (key, role, api) = (field("actor_key_id"), field("actor_role"), field("api"));
    let who = match (key.as_str(), role.as_str()) {
        ("", "") => "the license's client".to_owned(),
        (key, role) if key.starts_with("staff:") => format!("staff member {} ({role})", &key["staff:".len()..]),
        ("operator", _) => "the operator".to_owned(),
        (key, role) => format!("key {key} ({role})"),
    };
    if api.is_empty() {
        who
    } else {
        format!("{who}, through {api}")
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    at: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(raw_id): Path<String>,
    query: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = &signed.config;
    let license = match tenant_license(&state, &signed, &raw_id).await {
        Ok(license) => license,
        Err(response) => return response,
    };
    let at = match query.map(|Query(query)| query.at).unwrap_or_default().filter(|raw| !raw.trim().is_empty()) {
        None => None,
        Some(raw) => match dates::parse_instant(raw.trim()).or_else(|| local_instant(raw.trim())) {
            Some(at) => Some(at),
            None => return problem(config, StatusCode::BAD_REQUEST, &format!("at {}", dates::EXPECTED)),
        },
    };
    let pool = match crate::resources::pool(&state, &signed).await {
        Ok(pool) => pool,
        Err(response) => return response,
    };
    let (events, verified) =
        match tokio::join!(state.log.history(&license.id, 0, TIMELINE), state.log.verify(Some(&license.id))) {
            (Ok(events), Ok(report)) => (events, report.broken.is_empty()),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(error = %error, "panel: reading a license's history failed");
                return problem(
                    config,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The license's history can't be read just now.",
                );
            }
        };
    let then = match at {
        None => None,
        Some(at) => match keyledger_app::history::replay_until(&events, at) {
            Ok(then) => Some((at, then)),
            Err(error) => {
                tracing::error!(error = %error, "panel: replaying a license's history failed");
                return problem(config, StatusCode::SERVICE_UNAVAILABLE, "The license's history can't be read.");
            }
        },
    };
    let now = Utc::now();
    let key = license.license_key.as_ref().map(|key| key.as_str().to_owned()).unwrap_or_default();
    let status = license.status_at(now);
    let action = |name: &str, label: &str| {
        html! {
            form.inline method="post" action=(config.path(&format!("/licenses/{}/{name}", license.id))) {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                button type="submit" { (label) }
            }
        }
    };
    let content = html! {
        section aria-labelledby="state" {
            h2 #state { "State" }
            dl.facts {
                div { dt { "Key" } dd { code { (key) } } }
                div { dt { "Status" } dd #license-status { (status_name(status)) } }
                div { dt { "Seats" } dd { (license.devices.len()) " of " (license.max_activations.get()) " taken" } }
                div { dt { "Expires" } dd { (license.expires_at.map(instant).unwrap_or_else(|| "never".to_owned())) } }
                div { dt { "Product" } dd { (license.product_id.as_ref().map(|id| id.as_str()).unwrap_or("none")) } }
                div { dt { "Customer" } dd {
                    @match &license.customer_id {
                        Some(id) => a href=(config.path(&format!("/customers/{id}"))) { (id.as_str()) },
                        None => "none",
                    }
                } }
                div { dt { "Heartbeat" } dd { (license.policy.heartbeat_secs.map(|secs| format!("every {secs} s")).unwrap_or_else(|| "not required".to_owned())) } }
                div { dt { "Created" } dd { (license.created_at.map(instant).unwrap_or_default()) } }
            }
            @if signed.can_change() {
                div.actions {
                    @if status == LicenseStatus::Suspended {
                        (action("reinstate", "Reinstate"))
                    } @else if status != LicenseStatus::Revoked {
                        (action("suspend", "Suspend"))
                    }
                    @if !license.devices.is_empty() {
                        (action("revoke", "Release every device"))
                    }
                    @if license.expires_at.is_some() {
                        (action("renew", "Renew"))
                    }
                    (action("delete", "Delete"))
                }
                @if !license.devices.is_empty() {
                    form.filters #offline-token method="post" action=(config.path(&format!("/licenses/{}/token", license.id))) {
                        input type="hidden" name="csrf" value=(signed.session.csrf);
                        div { label for="machine" { "Machine id (offline token)" } input #machine type="text" name="machine" required maxlength="256"; }
                        button type="submit" { "Issue token" }
                    }
                }
                form.filters #quick-edit method="post" action=(config.path(&format!("/licenses/{}/edit", license.id))) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="seats" { "Seats" } input #seats type="number" min="1" name="seats" value=(license.max_activations.get()); }
                    div { label for="expires" { "Expires on" } input #expires type="date" name="expires"
                        value=(license.expires_at.map(|at| at.format("%Y-%m-%d").to_string()).unwrap_or_default()); }
                    button type="submit" { "Save" }
                }
            }
        }
        section aria-labelledby="devices-title" {
            h2 #devices-title { "Devices" }
            (devices(&signed, &license, now))
        }
        section aria-labelledby="resources-title" {
            h2 #resources-title { "Resources" }
            (crate::resources::license_section(&signed, &pool, &license))
        }
        section aria-labelledby="history" {
            h2 #history { "History" }
            p #chain class=(if verified { "verified" } else { "broken" }) {
                @if verified { "Hash chain verified: every event links to the one before it." }
                @else { "Hash chain BROKEN: the stored events do not match their hashes." }
            }
            form.filters method="get" action=(config.path(&format!("/licenses/{}", license.id))) {
                div {
                    label for="at" { "State at (RFC 3339 or date and time)" }
                    input #at type="text" name="at" placeholder="2026-12-01T12:00:00Z"
                        value=(then.as_ref().map(|(at, _)| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).unwrap_or_default());
                }
                button type="submit" { "Show" }
            }
            @if let Some((at, then)) = &then {
                section #state-at aria-label="State at the chosen instant" {
                    @match then {
                        None => p { "The license did not exist yet at " (instant(*at)) "." },
                        Some((past, version)) => {
                            p { "At " (instant(*at)) ", after event " (version) ":" }
                            dl.facts {
                                div { dt { "Status" } dd #state-at-status { (status_name(past.status_at(*at))) } }
                                div { dt { "Seats" } dd { (past.devices.len()) " of " (past.max_activations.get()) " taken" } }
                                div { dt { "Expires" } dd { (past.expires_at.map(instant).unwrap_or_else(|| "never".to_owned())) } }
                            }
                        }
                    }
                }
            }
            ol.timeline {
                @for event in &events {
                    li {
                        span.when { (event.occurred_at().map(instant).unwrap_or_default()) }
                        " "
                        strong.what { (event.event_type) }
                        " by " (actor(event))
                        " "
                        // The instant to the microsecond, as recorded: shown
                        // to the second, the event would fall after it.
                        a href=(format!("{}?at={}", config.path(&format!("/licenses/{}", license.id)), encode(&exact(event)))) {
                            "state after this"
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, &format!("License {key}"), "licenses", content))
}

/// An event's instant as recorded, to the microsecond.
fn exact(event: &LoggedEvent) -> String {
    event.occurred_at().map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default()
}

/// A date and time as a browser's `datetime-local` sends it, taken as UTC.
fn local_instant(raw: &str) -> Option<DateTime<Utc>> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|at| at.and_utc())
}

#[derive(Deserialize, Default)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// Quick edit: the seats.
    #[serde(default)]
    seats: String,
    /// Quick edit: the expiry date (`YYYY-MM-DD`), blank to keep it.
    #[serde(default)]
    expires: String,
    /// An offline token: the machine id, as the client program names it.
    #[serde(default)]
    machine: String,
    /// A deletion: `yes` once confirmed on the page that asks.
    #[serde(default)]
    confirm: String,
}

form_token!(ActionForm);

/// The quick edit's command: seats and expiry, each checked.
fn edit_command(form: &ActionForm, now: DateTime<Utc>) -> Result<LicenseCommand, String> {
    let max_activations = match form.seats.trim() {
        "" => None,
        raw => Some(
            raw.parse::<i64>()
                .ok()
                .and_then(|n| keyledger_domain::Seats::new(n).ok())
                .ok_or("Seats: a number from 1 to 100000.")?,
        ),
    };
    let expires_at = match form.expires.trim() {
        "" => None,
        raw => Some(
            chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|at| at.and_utc())
                .ok_or("Expires on: a date such as 2027-01-31.")?,
        ),
    };
    Ok(LicenseCommand::EditLicense {
        expires_at,
        max_activations,
        max_connections: None,
        policy: None,
        customer_id: None,
        at: now,
    })
}

/// Deactivates, blocks or unblocks one of the license's devices.
pub async fn device_act(
    State(state): State<AppState>,
    context: RequestContext,
    Path((raw_id, device, action)): Path<(String, String, String)>,
    Change { signed, form: _ }: Change<ActionForm>,
) -> Response {
    let license = match tenant_license(&state, &signed, &raw_id).await {
        Ok(license) => license,
        Err(response) => return response,
    };
    let held = license.devices.iter().map(|d| &d.machine);
    let machine = held
        .chain(license.blocked.iter().map(|b| &b.machine))
        .find(|machine| keyledger_domain::device_id(&license.id, machine).to_string() == device)
        .cloned();
    let Some(machine) = machine else {
        return problem(&signed.config, StatusCode::NOT_FOUND, "There is no such device on this license.");
    };
    let now = Utc::now();
    let command = match action.as_str() {
        "deactivate" => LicenseCommand::DeactivateLicense { machine, enforce_transfer_limit: false, at: now },
        "block" => LicenseCommand::BlockDevice { machine, at: now },
        "unblock" => LicenseCommand::UnblockDevice { machine, at: now },
        _ => return problem(&signed.config, StatusCode::NOT_FOUND, "There is no such action."),
    };
    run(&state, &signed, &context, &license, command).await
}

/// Runs a license command as the staff member, then shows the license.
async fn run(
    state: &AppState,
    signed: &Signed,
    context: &RequestContext,
    license: &License,
    command: LicenseCommand,
) -> Response {
    let caller = signed.caller();
    let metadata = keyledger_http::metadata::event_metadata(
        &panel_context(context),
        Some(&caller),
        &license.tenant_id,
        Utc::now(),
    );
    match state.licenses.execute(&license.id, command, metadata).await {
        Ok(_) => Redirect::to(&signed.config.path(&format!("/licenses/{}", license.id))).into_response(),
        Err(keyledger_app::CommandError::Refused(reason)) => {
            problem(&signed.config, StatusCode::CONFLICT, &format!("The license refused this: {reason}."))
        }
        Err(error) => {
            tracing::error!(error = %error, "panel: a license command failed");
            problem(&signed.config, StatusCode::SERVICE_UNAVAILABLE, "The change could not be made just now.")
        }
    }
}

pub async fn act(
    State(state): State<AppState>,
    context: RequestContext,
    Path((raw_id, action)): Path<(String, String)>,
    Change { signed, form }: Change<ActionForm>,
) -> Response {
    let license = match tenant_license(&state, &signed, &raw_id).await {
        Ok(license) => license,
        Err(response) => return response,
    };
    let now = Utc::now();
    let command = match action.as_str() {
        "delete" if form.confirm == "yes" => return delete(&state, &signed, &context, &license).await,
        "delete" => return confirm_deletion(&signed, &license),
        "token" => return offline_token(&state, &signed, &license, &form.machine).await,
        "renew" => match license.renewed_expiry() {
            Some(expires_at) => LicenseCommand::EditLicense {
                expires_at: Some(expires_at),
                max_activations: None,
                max_connections: None,
                policy: None,
                customer_id: None,
                at: now,
            },
            None => {
                return problem(
                    &signed.config,
                    StatusCode::CONFLICT,
                    "This license never expires, so it has nothing to renew: set an expiry in the quick edit.",
                )
            }
        },
        "suspend" => LicenseCommand::SuspendLicense { reason: Some(format!("by {}", signed.session.email)), at: now },
        "reinstate" => LicenseCommand::ReinstateLicense { at: now },
        "revoke" => LicenseCommand::RevokeLicense { at: now },
        "edit" => match edit_command(&form, now) {
            Ok(command) => command,
            Err(message) => return problem(&signed.config, StatusCode::BAD_REQUEST, &message),
        },
        _ => return problem(&signed.config, StatusCode::NOT_FOUND, "There is no such action."),
    };
    run(&state, &signed, &context, &license, command).await
}

/// Asks before a deletion.
fn confirm_deletion(signed: &Signed, license: &License) -> Response {
    let key = license.license_key.as_ref().map(|key| key.as_str()).unwrap_or_default();
    let question = html! {
        "Delete license " code { (key) } "? Its clients are refused from then on, and it leaves the lists. Its history stays in the log."
    };
    let page = format!("/licenses/{}", license.id);
    crate::layout::confirm(
        signed,
        "Delete a license",
        "licenses",
        question,
        &format!("{page}/delete"),
        "Delete the license",
        &page,
    )
}

/// Deletes the license (its resources let go), then shows the list.
async fn delete(state: &AppState, signed: &Signed, context: &RequestContext, license: &License) -> Response {
    let caller = signed.caller();
    let context = panel_context(context);
    let switch = keyledger_app::switch::Switch {
        licenses: &state.licenses,
        resources: &state.resources,
        metadata: |at| keyledger_http::metadata::event_metadata(&context, Some(&caller), &license.tenant_id, at),
    };
    match switch.delete(license).await {
        Ok(_) => Redirect::to(&signed.config.path("/licenses")).into_response(),
        Err(keyledger_app::switch::SwitchError::License(keyledger_app::CommandError::Refused(reason))) => {
            problem(&signed.config, StatusCode::CONFLICT, &format!("The license refused this: {reason}."))
        }
        Err(error) => unavailable(&signed.config, "Deleting the license", &error),
    }
}

/// A fresh offline token for a machine that holds a seat, shown once: for
/// a customer whose machine can't reach the server (they read out its
/// machine id; support hands back the token).
async fn offline_token(state: &AppState, signed: &Signed, license: &License, raw_machine: &str) -> Response {
    let config = &signed.config;
    let machine = match keyledger_app::client::parse_machine(Some(raw_machine.trim())) {
        Ok(id) => state.client.machine(id),
        Err(error) => return problem(config, StatusCode::BAD_REQUEST, &format!("Machine id: {error}.")),
    };
    let caller = signed.caller();
    let now = Utc::now();
    let signer = match state.client.signer_for(Some(&caller)).await {
        Ok(signer) => signer,
        Err(error) => return unavailable(config, "Signing a token", &error),
    };
    let machine_id = raw_machine.trim().to_owned();
    match state.client.token(&signer, &license.id, &machine, &machine_id, now).await {
        Ok((token, expires)) => {
            tracing::info!(license_id = %license.id, staff_id = %signed.session.staff_id, "offline token issued in the panel");
            let content = html! {
                p role="status" { "An offline token for machine " code { (machine_id) } ", valid until " (instant(expires)) ". Copy it now: it is not kept." }
                label for="token" { "Token" }
                textarea #token readonly rows="8" { (token) }
                p { a href=(config.path(&format!("/licenses/{}", license.id))) { "Back to the license" } }
            };
            html_response(StatusCode::OK, page(signed, "Offline token", "licenses", content))
        }
        Err(keyledger_app::client::ClientError::Refused(reason)) => problem(
            config,
            StatusCode::CONFLICT,
            &format!(
                "No token for this machine: {reason}. Only a machine that holds a seat of a usable license gets one."
            ),
        ),
        Err(error) => unavailable(config, "Signing a token", &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(n: i64) -> Arc<License> {
        let mut license = License::default();
        license.id = keyledger_domain::LicenseId::trusted(format!("{n:05}"));
        license.created_at = DateTime::from_timestamp(1_700_000_000 + n, 0);
        Arc::new(license)
    }

    #[test]
    fn a_page_is_the_newest_licenses_in_order() {
        let found: Vec<Arc<License>> = [7, 3, 120, 55, 1, 99].into_iter().chain(200..330).map(made).collect();
        let first = newest_page(found.clone(), 1);
        assert_eq!(first.len(), PAGE_SIZE);
        assert_eq!(first[0].id.as_str(), "00329");
        assert_eq!(first[49].id.as_str(), "00280");
        let last = newest_page(found.clone(), 3);
        let ids: Vec<&str> = last.iter().map(|license| license.id.as_str()).collect();
        assert_eq!(ids[ids.len() - 6..], ["00120", "00099", "00055", "00007", "00003", "00001"]);
        assert_eq!(first.len() + newest_page(found.clone(), 2).len() + last.len(), found.len());
        assert!(newest_page(Vec::new(), 1).is_empty());
    }
}
