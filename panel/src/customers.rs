//! Customers: searched as you type (name or email; the results table is
//! fetched again by htmx, and the same form works as a plain GET without
//! JavaScript), and a customer's page with their licenses and a few
//! figures.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use keyledger_app::customers::{search_pattern, MAX_QUERY_LEN, SEARCH_FILTER};
use keyledger_domain::{Customer, LicenseStatus};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use maud::{html, Markup};

use crate::layout::{html_response, page, problem};
use crate::session::Signed;

/// Customers a search shows at most.
const LISTED: i64 = 100;

fn label(customer: &Customer) -> String {
    let fields = &customer.fields;
    fields.name.clone().or_else(|| fields.email.clone()).unwrap_or_else(|| customer.id.to_string())
}

fn results(signed: &Signed, customers: &[Customer]) -> Markup {
    let config = &signed.config;
    html! {
        div #customer-results {
            @if customers.is_empty() {
                p role="status" { "No customer matches." }
            } @else {
                div.scroll {
                    table {
                        caption.visually-hidden { "Customers" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Company" } th scope="col" { "Since" } } }
                        tbody {
                            @for customer in customers {
                                tr {
                                    td { a href=(config.path(&format!("/customers/{}", customer.id))) { (label(customer)) } }
                                    td { (customer.fields.email.as_deref().unwrap_or_default()) }
                                    td { (customer.fields.company.as_deref().unwrap_or_default()) }
                                    td { (customer.created_at.map(instant).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    let config = &signed.config;
    let query = query.map(|Query(query)| query).unwrap_or_default();
    let q: String = query.get("q").map(|q| q.trim()).unwrap_or_default().chars().take(MAX_QUERY_LEN).collect();
    let (filter, pattern) = if q.is_empty() { ("TRUE", String::new()) } else { (SEARCH_FILTER, search_pattern(&q)) };
    let found = match state.customers.page(&signed.session.tenant_id, 0, LISTED, filter, &pattern).await {
        Ok(found) => found.into_iter().map(|stored| stored.record).collect::<Vec<_>>(),
        Err(error) => {
            tracing::error!(error = %error, "panel: searching customers failed");
            return problem(config, StatusCode::SERVICE_UNAVAILABLE, "Customers can't be searched just now.");
        }
    };
    // htmx asks for the results alone as the person types.
    if headers.contains_key("hx-request") {
        return html_response(StatusCode::OK, results(&signed, &found));
    }
    let content = html! {
        form.filters role="search" method="get" action=(config.path("/customers")) {
            div {
                label for="customer-q" { "Name or email contains" }
                input #customer-q type="search" name="q" value=(q) autocomplete="off"
                    hx-get=(config.path("/customers")) hx-trigger="input changed delay:300ms, search"
                    hx-target="#customer-results" hx-swap="outerHTML";
            }
            button type="submit" { "Search" }
        }
        (results(&signed, &found))
    };
    html_response(StatusCode::OK, page(&signed, "Customers", "customers", content))
}

pub async fn show(State(state): State<AppState>, signed: Signed, Path(raw_id): Path<String>) -> Response {
    let config = &signed.config;
    let not_found = || problem(config, StatusCode::NOT_FOUND, "There is no such customer.");
    let Ok(id) = uuid::Uuid::parse_str(raw_id.trim()).map(|id| id.to_string()) else { return not_found() };
    let customer = match state.customers.get(&id).await {
        Ok(Some(stored)) if stored.record.tenant_id.as_str() == signed.session.tenant_id && !stored.record.deleted => {
            stored.record
        }
        Ok(_) => return not_found(),
        Err(error) => {
            tracing::error!(error = %error, "panel: reading a customer failed");
            return problem(config, StatusCode::SERVICE_UNAVAILABLE, "The customer can't be read just now.");
        }
    };
    let now = Utc::now();
    let mut licenses = state
        .client
        .tenant_licenses_where(&signed.session.tenant_id, |license| {
            !license.deleted && license.customer_id.as_ref().is_some_and(|customer| customer.as_str() == id)
        })
        .await;
    licenses.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let usable = licenses.iter().filter(|license| license.ensure_usable(now).is_ok()).count();
    let devices: usize = licenses.iter().map(|license| license.devices.len()).sum();
    let content = html! {
        dl.figures {
            div { dt { "Licenses" } dd { (licenses.len()) } }
            div { dt { "Usable now" } dd { (usable) } }
            div { dt { "Devices" } dd { (devices) } }
        }
        dl.facts {
            div { dt { "Email" } dd { (customer.fields.email.as_deref().unwrap_or("none")) } }
            div { dt { "Company" } dd { (customer.fields.company.as_deref().unwrap_or("none")) } }
            div { dt { "Since" } dd { (customer.created_at.map(instant).unwrap_or_default()) } }
        }
        h2 { "Licenses" }
        @if licenses.is_empty() {
            p { "None." }
        } @else {
            ul {
                @for license in &licenses {
                    li {
                        a href=(config.path(&format!("/licenses/{}", license.id))) {
                            code { (license.license_key.as_ref().map(|key| key.as_str()).unwrap_or_default()) }
                        }
                        " — "
                        (match license.status_at(now) {
                            LicenseStatus::Generated => "not activated",
                            LicenseStatus::Activated => "active",
                            LicenseStatus::Suspended => "suspended",
                            LicenseStatus::Expired => "expired",
                            LicenseStatus::Revoked => "revoked",
                        })
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, &label(&customer), "customers", content))
}
