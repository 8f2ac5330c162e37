//! The search box on every page: customers, licenses and devices that
//! match, as the V2 License Server's global search finds them
//! ([`keyledger_app::search`]), each linked to its page.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyledger_app::search::{search, Kind};
use keyledger_http::state::AppState;
use maud::html;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::Signed;

/// Results shown of each kind.
const SHOWN: usize = 50;

pub async fn results(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = &signed.config;
    let q = query.ok().and_then(|Query(query)| query.get("q").map(|q| q.trim().to_lowercase())).unwrap_or_default();
    if q.chars().count() < 2 || q.chars().count() > 200 {
        return problem(config, StatusCode::BAD_REQUEST, "Search: 2 to 200 characters.");
    }
    let kinds = [Kind::Customer, Kind::License, Kind::Device];
    let found = match search(&state.customers, &state.client, &signed.session.tenant_id, &q, &kinds).await {
        Ok(found) => found,
        Err(error) => return unavailable(config, "Searching", &error),
    };
    let more = |count: usize| if count > SHOWN { format!(" (the first {SHOWN} of {count})") } else { String::new() };
    let content = html! {
        p role="status" { (found.customers.len()) " customers, " (found.licenses.len()) " licenses and " (found.devices.len()) " devices match " q { (q) } "." }
        section aria-labelledby="found-licenses" {
            h2 #found-licenses { "Licenses" (more(found.licenses.len())) }
            ul {
                @for license in found.licenses.iter().take(SHOWN) {
                    li { a href=(config.path(&format!("/licenses/{}", license.id))) { code { (license.license_key.as_ref().map(|key| key.as_str()).unwrap_or("—")) } } }
                }
            }
        }
        section aria-labelledby="found-customers" {
            h2 #found-customers { "Customers" (more(found.customers.len())) }
            ul {
                @for customer in found.customers.iter().take(SHOWN) {
                    @let fields = &customer.record.fields;
                    li {
                        a href=(config.path(&format!("/customers/{}", customer.record.id))) {
                            (fields.name.as_deref().or(fields.email.as_deref()).unwrap_or("(no name)"))
                        }
                        @if let (Some(_), Some(email)) = (&fields.name, &fields.email) { " — " (email) }
                    }
                }
            }
        }
        section aria-labelledby="found-devices" {
            h2 #found-devices { "Devices" (more(found.devices.len())) }
            ul {
                @for (license, device) in found.devices.iter().take(SHOWN) {
                    li {
                        (device.machine_name.as_str()) " on "
                        a href=(config.path(&format!("/licenses/{}", license.id))) { code { (license.license_key.as_ref().map(|key| key.as_str()).unwrap_or("—")) } }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Search", "search", content))
}
