//! The V2 License Server's global search: customers by name or email,
//! licenses by key or customer, devices by machine name or hardware hash
//! prefix; case-insensitive, parts of words, the caller's tenant only.
//!
//! Customers are searched in their view (an index-backed `LIKE` over the
//! folded name and email); licenses and devices in the process's
//! validation view, which holds every license: one pass over the tenant's
//! licenses, the same on both backends, with no search index to keep.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use keyledger_domain::{License, LicenseStatus};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::SystemCaller;
use keyledger_http::dialect::answer;
use keyledger_http::error::ApiError;
use keyledger_http::state::AppState;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;
/// Customers matched by name or email that licenses are looked up by.
const MAX_MATCHED_CUSTOMERS: i64 = 1000;

pub fn routes() -> keyledger_http::Routes {
    keyledger_http::Routes::new().add(routes!(global_search))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Customer,
    License,
    Device,
}

fn status_text(license: &License) -> &'static str {
    match license.status_at(Utc::now()) {
        LicenseStatus::Generated | LicenseStatus::Activated => "Active",
        LicenseStatus::Suspended => "Suspended",
        LicenseStatus::Expired => "Expired",
        LicenseStatus::Revoked => "Revoked",
    }
}

#[utoipa::path(
    get,
    path = "/api/global-search",
    tag = "v2-server",
    operation_id = "v2_server_global_search",
    summary = "Customers, licenses and devices matching a query",
    params(
        ("q" = String, Query, description = "At least 2 characters; any case, any part of a word"),
        ("type" = Option<String>, Query, description = "customer, license or device"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (20)")
    ),
    responses((status = 200, description = "{results: [{type, id, title, subtitle, url}], total}", body = Object), (status = "default", description = "{error: {code, message, details}}", body = Object)),
    security(("apiKey" = []))
)]
async fn global_search(
    State(state): State<AppState>,
    caller: Result<SystemCaller, ApiError>,
    query: super::RawQuery,
) -> Response {
    answer(
        async {
            let SystemCaller(caller) = caller?;
            let query = super::query_of(query, &["q", "type", "limit"])?;
            let q = query.get("q").map(|q| q.trim().to_lowercase()).unwrap_or_default();
            if q.chars().count() < 2 || q.chars().count() > 200 {
                return Err(ApiError::field("q", "q must be 2 to 200 characters"));
            }
            let kinds: Vec<Kind> = match query.get("type").map(String::as_str) {
                None => vec![Kind::Customer, Kind::License, Kind::Device],
                Some("customer") => vec![Kind::Customer],
                Some("license") => vec![Kind::License],
                Some("device") => vec![Kind::Device],
                Some(_) => return Err(ApiError::field("type", "type must be customer, license or device")),
            };
            let limit = match query.get("limit") {
                None => DEFAULT_LIMIT,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| ApiError::field("limit", "limit must be an integer from 1 to 100"))?,
            };
            let (tenant_id, _) = caller.tenant()?;
            search(&state, tenant_id, &q, &kinds, limit).await
        }
        .await,
    )
}

async fn search(state: &AppState, tenant_id: &str, q: &str, kinds: &[Kind], limit: usize) -> Result<Value, ApiError> {
    let mut results = Vec::new();
    let mut total = 0usize;
    // Customers whose name or email matches: shown, and their licenses too.
    let pattern = keyledger_app::customers::search_pattern(q);
    let customers = state
        .customers
        .page(tenant_id, 0, MAX_MATCHED_CUSTOMERS, keyledger_app::customers::SEARCH_FILTER, &pattern)
        .await
        .map_err(ApiError::internal)?;
    if kinds.contains(&Kind::Customer) {
        total += customers.len();
        for customer in customers.iter().take(limit) {
            let fields = &customer.record.fields;
            let number = customer.record.number;
            results.push(json!({
                "type": "customer",
                "id": number,
                "title": fields.name.as_deref().or(fields.email.as_deref()),
                "subtitle": fields.email,
                "url": number.map(|n| format!("/customer/edit/{n}")),
            }));
        }
    }
    if !kinds.contains(&Kind::License) && !kinds.contains(&Kind::Device) {
        return Ok(json!({ "results": results, "total": total }));
    }
    let matched_customers: HashSet<&str> = customers.iter().map(|c| c.record.id.as_str()).collect();
    // Keys are upper case ASCII and machine names mostly ASCII: compared
    // without making a lower-case copy of each.
    let upper = q.to_ascii_uppercase();
    let hex_like = q.bytes().all(|b| b.is_ascii_hexdigit());
    let wants_licenses = kinds.contains(&Kind::License);
    let wants_devices = kinds.contains(&Kind::Device);
    let key_matches = |license: &License| {
        license.license_key.as_ref().is_some_and(|key| key.as_str().contains(upper.as_str()))
            || license.customer_id.as_ref().is_some_and(|id| matched_customers.contains(id.as_str()))
    };
    let device_matches = |device: &keyledger_domain::Device| {
        contains_ignoring_case(device.machine_name.as_str(), q)
            || (hex_like && device.machine.hex().as_str().starts_with(q))
    };
    let customer_ids: Vec<&str> = if wants_licenses { matched_customers.iter().copied().collect() } else { Vec::new() };
    let search = keyledger_projections::Search {
        tenant_id,
        key_part: wants_licenses.then_some(upper.as_str()),
        customer_ids: &customer_ids,
    };
    let mut licenses =
        state.client.search_licenses(&search, |license| wants_devices && license.devices.iter().any(device_matches));
    licenses.sort_by_key(|license| license.number);
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    if kinds.contains(&Kind::License) {
        for license in &licenses {
            if !key_matches(license) {
                continue;
            }
            total += 1;
            if results.len() >= limit {
                continue;
            }
            let customer = customer_name(state, &mut names, license).await?;
            let status = status_text(license);
            results.push(json!({
                "type": "license",
                "id": license.number,
                "title": license.license_key.as_ref().map(|key| key.as_str()),
                "subtitle": match customer { Some(name) => format!("{name} - {status}"), None => status.to_owned() },
                "url": license.number.map(|n| format!("/license/edit/{n}")),
            }));
        }
    }
    if kinds.contains(&Kind::Device) {
        for license in &licenses {
            for device in &license.devices {
                if !device_matches(device) {
                    continue;
                }
                total += 1;
                if results.len() >= limit {
                    continue;
                }
                results.push(json!({
                    "type": "device",
                    "id": device.number,
                    "title": device.machine_name.as_str(),
                    "subtitle": license.license_key.as_ref().map(|key| key.as_str()),
                    "url": license.number.map(|n| format!("/license/edit/{n}")),
                }));
            }
        }
    }
    Ok(json!({ "results": results, "total": total }))
}

/// Whether `text` holds `needle` (lower case), in any case.
fn contains_ignoring_case(text: &str, needle: &str) -> bool {
    if text.is_ascii() && needle.is_ascii() {
        let (text, needle) = (text.as_bytes(), needle.as_bytes());
        return needle.is_empty() || text.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle));
    }
    text.to_lowercase().contains(needle)
}

/// The license's customer's name, read once a search.
async fn customer_name(
    state: &AppState,
    names: &mut HashMap<String, Option<String>>,
    license: &License,
) -> Result<Option<String>, ApiError> {
    let Some(id) = &license.customer_id else { return Ok(None) };
    if let Some(name) = names.get(id.as_str()) {
        return Ok(name.clone());
    }
    let stored = state.customers.get(id.as_str()).await.map_err(ApiError::internal)?;
    let name = stored.and_then(|stored| stored.record.fields.name);
    names.insert(id.to_string(), name.clone());
    Ok(name)
}
