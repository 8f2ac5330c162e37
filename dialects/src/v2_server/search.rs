//! The V2 License Server's global search: customers by name or email,
//! licenses by key or customer, devices by machine name or hardware hash
//! prefix; case-insensitive, parts of words, the caller's tenant only
//! ([`keyledger_app::search`], which the panel's search box uses too).

use std::collections::HashMap;

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

pub fn routes() -> keyledger_http::Routes {
    keyledger_http::Routes::new().add(routes!(global_search))
}

use keyledger_app::search::Kind;

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
    let found = keyledger_app::search::search(&state.customers, &state.client, tenant_id, q, kinds)
        .await
        .map_err(ApiError::internal)?;
    let total = found.customers.len() + found.licenses.len() + found.devices.len();
    let mut results = Vec::new();
    for customer in found.customers.iter().take(limit) {
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
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    for license in found.licenses.iter().take(limit.saturating_sub(results.len())) {
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
    for (license, device) in found.devices.iter().take(limit.saturating_sub(results.len())) {
        results.push(json!({
            "type": "device",
            "id": device.number,
            "title": device.machine_name.as_str(),
            "subtitle": license.license_key.as_ref().map(|key| key.as_str()),
            "url": license.number.map(|n| format!("/license/edit/{n}")),
        }));
    }
    Ok(json!({ "results": results, "total": total }))
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
