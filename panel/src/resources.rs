//! The tenant's resource pool (servers, seats of a lab…): each resource
//! listed with its status and the license holding it, a form to add one,
//! and retiring one that no license holds. Allocating and releasing are
//! on a license's page ([`license_section`]). Each change is the pool
//! command the API runs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use keyledger_app::aggregates::CatalogError;
use keyledger_domain::{License, ResourceCommand, ResourcePool, ResourceStatus, TenantId};
use keyledger_http::extract::RequestContext;
use keyledger_http::instant;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{panel_context, Change, Signed};

/// The tenant's pool (empty when it has none yet).
pub async fn pool(state: &AppState, signed: &Signed) -> Result<ResourcePool, Response> {
    match state.resources.get(&signed.session.tenant_id).await {
        Ok(stored) => Ok(stored.map(|stored| stored.record).unwrap_or_default()),
        Err(error) => Err(unavailable(&signed.config, "Reading the resources", &error)),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = &signed.config;
    let status = match query.ok().and_then(|Query(query)| query.status).as_deref().map(str::trim) {
        None | Some("") => None,
        Some("available") => Some(ResourceStatus::Available),
        Some("allocated") => Some(ResourceStatus::Allocated),
        Some("retired") => Some(ResourceStatus::Retired),
        Some(_) => return problem(config, StatusCode::BAD_REQUEST, "status must be available, allocated or retired"),
    };
    let pool = match pool(&state, &signed).await {
        Ok(pool) => pool,
        Err(response) => return response,
    };
    let shown: Vec<_> = pool.resources.iter().filter(|r| status.is_none_or(|status| r.status == status)).collect();
    let status_option = |value: &str, label: &str| {
        html! { option value=(value) selected[status.map(ResourceStatus::as_str).unwrap_or("") == value] { (label) } }
    };
    let content = html! {
        form.filters method="get" action=(config.path("/resources")) {
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    (status_option("", "Any"))
                    (status_option("available", "Available"))
                    (status_option("allocated", "Allocated"))
                    (status_option("retired", "Retired"))
                }
            }
            button type="submit" { "Filter" }
        }
        @if shown.is_empty() {
            p { "No resource." }
        } @else {
            div.scroll {
                table #resources {
                    thead { tr { th scope="col" { "Id" } th scope="col" { "Type" } th scope="col" { "Identifier" } th scope="col" { "Status" } th scope="col" { "Held by" } @if signed.can_change() { th scope="col" { "Actions" } } } }
                    tbody {
                        @for resource in &shown {
                            tr {
                                td { (resource.id) }
                                td { (resource.r#type) }
                                td { (resource.identifier) }
                                td { (resource.status.as_str()) }
                                td {
                                    @if let Some(license_id) = &resource.license_id {
                                        a href=(config.path(&format!("/licenses/{license_id}"))) { "a license" }
                                        " since " (resource.allocated_at.map(instant).unwrap_or_default())
                                    }
                                }
                                @if signed.can_change() {
                                    td {
                                        @if resource.status == ResourceStatus::Available {
                                            form.inline method="post" action=(config.path(&format!("/resources/{}/retire", resource.id))) {
                                                input type="hidden" name="csrf" value=(signed.session.csrf);
                                                button type="submit" aria-label=(format!("Retire {}", resource.identifier)) { "Retire" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if signed.can_change() {
            section aria-labelledby="new-resource" {
                h2 #new-resource { "New resource" }
                form.filters method="post" action=(config.path("/resources")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="type" { "Type" } input #type type="text" name="kind" placeholder="server" required maxlength="100"; }
                    div { label for="identifier" { "Identifier" } input #identifier type="text" name="identifier" required maxlength="100"; }
                    button type="submit" { "Add" }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Resources", "resources", content))
}

/// A license's page's resources: those it holds, and for an admin a form
/// to allocate an available one and a button to release them all.
pub fn license_section(signed: &Signed, pool: &ResourcePool, license: &License) -> Markup {
    let config = &signed.config;
    let held: Vec<_> = pool.held_by(&license.id).collect();
    let available: Vec<_> = pool.resources.iter().filter(|r| r.status == ResourceStatus::Available).collect();
    let base = config.path(&format!("/licenses/{}/resources", license.id));
    html! {
        @if held.is_empty() {
            p #held-resources { "It holds no resource." }
        } @else {
            ul #held-resources {
                @for resource in &held { li { (resource.r#type) " " code { (resource.identifier) } } }
            }
        }
        @if signed.can_change() {
            @if !available.is_empty() {
                form.filters method="post" action=(format!("{base}/allocate")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div {
                        label for="resource" { "Available resource" }
                        select #resource name="resource" {
                            @for resource in &available { option value=(resource.id) { (resource.r#type) " " (resource.identifier) } }
                        }
                    }
                    button type="submit" { "Allocate" }
                }
            }
            @if !held.is_empty() {
                form.inline method="post" action=(format!("{base}/release")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    button type="submit" { "Release its resources" }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ResourceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    identifier: String,
    /// Allocation: the resource's id.
    #[serde(default)]
    resource: String,
}

form_token!(ResourceForm);

/// Runs a command on the tenant's pool as the staff member, then shows
/// `then`.
async fn change_pool(
    state: &AppState,
    signed: &Signed,
    context: &RequestContext,
    command: impl Fn() -> ResourceCommand,
    then: String,
) -> Response {
    let config = &signed.config;
    let tenant_id = signed.session.tenant_id.as_str();
    let metadata = event_metadata(&panel_context(context), Some(&signed.caller()), tenant_id, Utc::now());
    match state.resources.execute(tenant_id, command, &metadata).await {
        Ok(_) => Redirect::to(&config.path(&then)).into_response(),
        Err(CatalogError::Refused(refusal)) => problem(config, StatusCode::CONFLICT, &format!("{refusal}.")),
        Err(error) => unavailable(config, "Changing the resources", &error),
    }
}

pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    Change { signed, form }: Change<ResourceForm>,
) -> Response {
    let (kind, identifier) = (form.kind.trim().to_owned(), form.identifier.trim().to_owned());
    for (name, value) in [("Type", &kind), ("Identifier", &identifier)] {
        if let Err(why) = keyledger_domain::check_resource_text(value) {
            return problem(&signed.config, StatusCode::BAD_REQUEST, &format!("{name}: it {why}."));
        }
    }
    let tenant_id = TenantId::trusted(signed.session.tenant_id.clone());
    let at = Utc::now();
    let command = || ResourceCommand::Create {
        tenant_id: tenant_id.clone(),
        r#type: kind.clone(),
        identifier: identifier.clone(),
        at,
    };
    change_pool(&state, &signed, &context, command, "/resources".to_owned()).await
}

fn resource_id(signed: &Signed, raw: &str) -> Result<i64, Response> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| problem(&signed.config, StatusCode::NOT_FOUND, "There is no such resource."))
}

pub async fn retire(
    State(state): State<AppState>,
    context: RequestContext,
    Path(raw_id): Path<String>,
    Change { signed, .. }: Change<ResourceForm>,
) -> Response {
    let id = match resource_id(&signed, &raw_id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let at = Utc::now();
    change_pool(&state, &signed, &context, || ResourceCommand::Retire { id, at }, "/resources".to_owned()).await
}

/// Allocates a resource to the license, or releases all it holds.
pub async fn for_license(
    State(state): State<AppState>,
    context: RequestContext,
    Path((raw_license, action)): Path<(String, String)>,
    Change { signed, form }: Change<ResourceForm>,
) -> Response {
    let license = match crate::licenses::tenant_license(&state, &signed, &raw_license).await {
        Ok(license) => license,
        Err(response) => return response,
    };
    let license_id = license.id.to_string();
    let at = Utc::now();
    let then = format!("/licenses/{license_id}");
    match action.as_str() {
        "allocate" => {
            let id = match resource_id(&signed, &form.resource) {
                Ok(id) => id,
                Err(response) => return response,
            };
            let command = || ResourceCommand::Allocate { license_id: license_id.clone(), ids: vec![id], at };
            change_pool(&state, &signed, &context, command, then).await
        }
        "release" => {
            let command = || ResourceCommand::ReleaseAll { license_id: license_id.clone(), at };
            change_pool(&state, &signed, &context, command, then).await
        }
        _ => problem(&signed.config, StatusCode::NOT_FOUND, "There is no such action."),
    }
}
