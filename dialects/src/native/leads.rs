//! Leads (tenant admins): institutions a vendor sells to, with their
//! contacts, activities and conversion into a customer; listed, exported
//! and imported as CSV. Each lead is an aggregate of its own in the log,
//! found by its per-tenant number. The V2 License Server dialect adds
//! their statistics (`GET /leads/api/stats`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use keyledger_app::aggregates::CatalogError;
use keyledger_app::lead_csv::{self, ImportError, NewLead};
use keyledger_app::leads::CreateLeadError;
use keyledger_domain::{parse_lead_text, Activity, Contact, Lead, LeadCommand, LeadError};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::routes;

use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

/// Leads a list or an export answers at most.
const MAX_LISTED: i64 = 10_000;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(create_lead, list_leads))
        .add(routes!(get_lead, update_lead, delete_lead))
        .add(routes!(add_contact))
        .add(routes!(record_activity))
        .add(routes!(convert_lead))
        .add(routes!(export_leads))
        .add(routes!(import_leads))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadRequest {
    /// The institution's name, 1 to 200 characters.
    pub name: Option<String>,
    /// `university`, `company`, `government` or any other word.
    pub r#type: Option<String>,
    pub contacts: Option<Vec<ContactRequest>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest {
    /// What happened: `call`, `email`, `meeting`…
    pub kind: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct ConvertRequest {
    /// The customer it became (a UUID); a new customer named after the
    /// lead when left out.
    pub customer_id: Option<String>,
}

fn text(field: &str, raw: Option<&str>) -> ApiResult<String> {
    let raw = raw.ok_or_else(|| ApiError::field(field, format!("{field} is required")))?;
    parse_lead_text(raw).map_err(|why| ApiError::field(field, format!("{field} {why}")))
}

fn contact(field: &str, request: &ContactRequest) -> ApiResult<Contact> {
    let name = text(&format!("{field}.name"), request.name.as_deref())?;
    let email = match request.email.as_deref() {
        None => None,
        Some(raw) => Some(
            keyledger_domain::parse_email(raw)
                .map_err(|e| ApiError::field(&format!("{field}.email"), format!("email {e}")))?,
        ),
    };
    Ok(Contact { name, email })
}

fn lead_error(error: CatalogError<LeadError>) -> ApiError {
    match error {
        CatalogError::Refused(LeadError::NotFound) => lead_not_found(),
        CatalogError::Refused(refusal) => {
            ApiError::bad_request("lead_refused", refusal.to_string()).with_status(StatusCode::CONFLICT)
        }
        CatalogError::Taken => ApiError::bad_request("lead_taken", "taken").with_status(StatusCode::CONFLICT),
        CatalogError::Contended => ApiError::contended(),
        CatalogError::Store(error) => ApiError::internal(error),
    }
}

fn lead_not_found() -> ApiError {
    ApiError::not_found("No such lead").with_code("lead_not_found")
}

pub fn describe(lead: &Lead) -> Value {
    json!({
        "id": lead.number,
        "name": lead.name,
        "type": lead.r#type,
        "contacts": lead.contacts,
        "activities": lead.activities.iter().map(|a| json!({
            "kind": a.kind, "note": a.note, "at": keyledger_http::instant(a.at),
        })).collect::<Vec<_>>(),
        "convertedTo": lead.converted_to,
        "convertedAt": lead.converted_at.map(keyledger_http::instant),
        "createdAt": lead.created_at.map(keyledger_http::instant),
    })
}

/// Every live lead of the tenant, oldest first.
pub async fn tenant_leads(state: &AppState, tenant_id: &str) -> ApiResult<Vec<Lead>> {
    let stored = state.leads.list(tenant_id, None, MAX_LISTED, "TRUE", "").await.map_err(lead_error)?;
    Ok(stored.into_iter().map(|stored| stored.record).collect())
}

async fn lead_numbered(state: &AppState, tenant_id: &str, raw: &str) -> ApiResult<Lead> {
    let number = raw
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::field("leadId", "leadId must be a positive integer"))?;
    let stored = state.leads.by_number(tenant_id, number).await.map_err(lead_error)?;
    stored.map(|stored| stored.record).ok_or_else(lead_not_found)
}

/// Runs `command` on the lead with `id`, with the caller as actor.
async fn change(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    tenant_id: &str,
    id: &str,
    command: impl Fn() -> LeadCommand,
) -> ApiResult<Lead> {
    let metadata = event_metadata(context, Some(caller), tenant_id, Utc::now());
    Ok(state.leads.execute(id, command, &metadata).await.map_err(lead_error)?.record)
}

/// A new lead, checked; its number is taken only when it is written.
async fn create(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    tenant_id: &str,
    new: NewLead,
) -> ApiResult<Lead> {
    let at = Utc::now();
    let metadata = event_metadata(context, Some(caller), tenant_id, at);
    keyledger_app::leads::create_lead(&state.leads, &state.serials, tenant_id, new, &metadata, at).await.map_err(
        |error| match error {
            CreateLeadError::Serial(error) => ApiError::internal(error),
            CreateLeadError::Store(error) => lead_error(error),
        },
    )
}

#[utoipa::path(
    post,
    path = "/api/v1/leads",
    tag = "leads",
    summary = "Add a lead (tenant admin)",
    request_body = LeadRequest,
    responses((status = 201, description = "The lead, with its integer id", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_lead(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    JsonBody(request): JsonBody<LeadRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = caller.require_admin()?.to_owned();
    let name = text("name", request.name.as_deref())?;
    let kind = text("type", request.r#type.as_deref())?;
    let contacts = request.contacts.unwrap_or_default();
    if contacts.len() > 100 {
        return Err(ApiError::field("contacts", "contacts must be at most 100"));
    }
    let contacts = contacts
        .iter()
        .enumerate()
        .map(|(n, c)| contact(&format!("contacts[{n}]"), c))
        .collect::<ApiResult<Vec<_>>>()?;
    let lead = create(&state, &context, &caller, &tenant_id, NewLead { name, kind, contacts }).await?;
    Ok((StatusCode::CREATED, Json(describe(&lead))))
}

#[utoipa::path(
    get,
    path = "/api/v1/leads",
    tag = "leads",
    summary = "The tenant's leads, oldest first (tenant admin)",
    responses((status = 200, description = "{leads}", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_leads(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let leads = tenant_leads(&state, tenant_id).await?;
    Ok(Json(json!({ "leads": leads.iter().map(describe).collect::<Vec<_>>() })))
}

#[utoipa::path(
    get,
    path = "/api/v1/leads/{lead_id}",
    tag = "leads",
    summary = "A lead (tenant admin)",
    params(("lead_id" = i64, Path, description = "The lead's integer id")),
    responses((status = 200, description = "The lead", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn get_lead(State(state): State<AppState>, caller: Caller, PathParam(raw): PathParam) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    Ok(Json(describe(&lead_numbered(&state, tenant_id, &raw).await?)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/leads/{lead_id}",
    tag = "leads",
    summary = "Rename a lead or change its type (tenant admin)",
    params(("lead_id" = i64, Path, description = "The lead's integer id")),
    request_body = LeadRequest,
    responses((status = 200, description = "The lead", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn update_lead(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw): PathParam,
    JsonBody(request): JsonBody<LeadRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let lead = lead_numbered(&state, &tenant_id, &raw).await?;
    if request.contacts.is_some() {
        return Err(ApiError::field("contacts", "contacts are added one at a time (POST …/contacts)"));
    }
    let name = request.name.as_deref().map(|raw| text("name", Some(raw))).transpose()?;
    let kind = request.r#type.as_deref().map(|raw| text("type", Some(raw))).transpose()?;
    let at = Utc::now();
    let command = || LeadCommand::Update { name: name.clone(), r#type: kind.clone(), at };
    Ok(Json(describe(&change(&state, &context, &caller, &tenant_id, &lead.id, command).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/leads/{lead_id}",
    tag = "leads",
    summary = "Delete a lead; its history stays (tenant admin)",
    params(("lead_id" = i64, Path, description = "The lead's integer id")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn delete_lead(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw): PathParam,
) -> ApiResult<StatusCode> {
    let tenant_id = caller.require_admin()?.to_owned();
    let lead = lead_numbered(&state, &tenant_id, &raw).await?;
    let at = Utc::now();
    change(&state, &context, &caller, &tenant_id, &lead.id, || LeadCommand::Delete { at }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/leads/{lead_id}/contacts",
    tag = "leads",
    summary = "Add a contact to a lead (tenant admin)",
    params(("lead_id" = i64, Path, description = "The lead's integer id")),
    request_body = ContactRequest,
    responses((status = 200, description = "The lead", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn add_contact(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw): PathParam,
    JsonBody(request): JsonBody<ContactRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let lead = lead_numbered(&state, &tenant_id, &raw).await?;
    let added = contact("contact", &request).map_err(|mut error| {
        error.field = error.field.map(|field| field.trim_start_matches("contact.").to_owned());
        error
    })?;
    let at = Utc::now();
    let command = || LeadCommand::AddContact { contact: added.clone(), at };
    Ok(Json(describe(&change(&state, &context, &caller, &tenant_id, &lead.id, command).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/leads/{lead_id}/activities",
    tag = "leads",
    summary = "Record an activity with a lead (tenant admin)",
    params(("lead_id" = i64, Path, description = "The lead's integer id")),
    request_body = ActivityRequest,
    responses((status = 200, description = "The lead", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn record_activity(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw): PathParam,
    JsonBody(request): JsonBody<ActivityRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let lead = lead_numbered(&state, &tenant_id, &raw).await?;
    let kind = text("kind", request.kind.as_deref())?;
    let note = request.note.as_deref().map(|raw| text("note", Some(raw))).transpose()?;
    let activity = Activity { kind, note, at: Utc::now() };
    let command = || LeadCommand::RecordActivity { activity: activity.clone() };
    Ok(Json(describe(&change(&state, &context, &caller, &tenant_id, &lead.id, command).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/leads/{lead_id}/convert",
    tag = "leads",
    summary = "Record that a lead became a customer (tenant admin)",
    params(("lead_id" = i64, Path, description = "The lead's integer id")),
    request_body = ConvertRequest,
    responses((status = 200, description = "The lead", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn convert_lead(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw): PathParam,
    JsonBody(request): JsonBody<ConvertRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let lead = lead_numbered(&state, &tenant_id, &raw).await?;
    if lead.converted_to.is_some() {
        return Err(ApiError::bad_request("lead_converted", "The lead became a customer already")
            .with_status(StatusCode::CONFLICT));
    }
    let customer_id = match request.customer_id.as_deref() {
        Some(raw) => super::customers::tenant_customer_id(&state, &tenant_id, raw).await?,
        None => super::customers::create_named(&state, &context, &caller, &tenant_id, &lead.name).await?,
    };
    let customer_id = keyledger_domain::CustomerId::trusted(customer_id);
    let at = Utc::now();
    let command = || LeadCommand::Convert { customer_id: customer_id.clone(), at };
    Ok(Json(describe(&change(&state, &context, &caller, &tenant_id, &lead.id, command).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/leads/export",
    tag = "leads",
    summary = "The tenant's leads as CSV: id, name, type, contact_name, contact_email, converted (tenant admin)",
    responses((status = 200, description = "text/csv, one row per contact (or per lead without one)", content_type = "text/csv", body = String), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn export_leads(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let tenant_id = caller.require_admin()?;
    let out = lead_csv::export(&tenant_leads(&state, tenant_id).await?);
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/leads/import",
    tag = "leads",
    summary = "Import leads from CSV (name, type, contact_name, contact_email): all rows or none (tenant admin)",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "{imported}", body = Object), (status = "default", description = "An error: a JSON body with a stable `code`; invalid_csv lists each bad row by line", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn import_leads(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::field("body", "the CSV must be UTF-8"))?;
    let leads = lead_csv::check_import(text).map_err(|error| match &error {
        ImportError::Unreadable(message) => ApiError::field("body", message.clone()),
        ImportError::Rows(_) => ApiError::bad_request("invalid_csv", error.to_string()).with_field("body"),
    })?;
    let imported = leads.len();
    for lead in leads {
        create(&state, &context, &caller, &tenant_id, lead).await?;
    }
    Ok(Json(json!({ "imported": imported })))
}
