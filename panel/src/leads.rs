//! Leads, at the V2 License Server document's HTML routes under the
//! panel: `/leads/` (the list), `/leads/create`, `/leads/edit/{id}`,
//! `/leads/update/{id}`, `/leads/delete/{id}`, `/leads/export` (CSV) and
//! `/leads/import` (CSV, all rows or none, each bad row named by its
//! line). `{id}` is the lead's number, as the document's. The CSV is the
//! API's ([`keyledger_app::lead_csv`]).

use axum::extract::multipart::Multipart;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use keyledger_app::lead_csv::{self, ImportError, NewLead};
use keyledger_app::leads::{create_lead, CreateLeadError};
use keyledger_domain::{parse_email, parse_lead_text, Contact, Lead, LeadCommand};
use keyledger_http::extract::RequestContext;
use keyledger_http::instant;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{panel_context, Bare, Change, Signed};

/// Leads a list shows at most.
const MAX_LISTED: i64 = 10_000;
/// The largest CSV an import takes.
pub const MAX_IMPORT_BYTES: usize = 2 * 1024 * 1024;

async fn tenant_leads(state: &AppState, signed: &Signed) -> Result<Vec<Lead>, Response> {
    match state.leads.list(&signed.session.tenant_id, None, MAX_LISTED, "TRUE", "").await {
        Ok(stored) => Ok(stored.into_iter().map(|stored| stored.record).collect()),
        Err(error) => Err(unavailable(&signed.config, "Reading the leads", &error)),
    }
}

async fn numbered(state: &AppState, signed: &Signed, raw: &str) -> Result<Lead, Response> {
    let not_found = || problem(&signed.config, StatusCode::NOT_FOUND, "There is no such lead.");
    let number = raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(not_found)?;
    match state.leads.by_number(&signed.session.tenant_id, number).await {
        Ok(Some(stored)) if !stored.record.deleted => Ok(stored.record),
        Ok(_) => Err(not_found()),
        Err(error) => Err(unavailable(&signed.config, "Reading the lead", &error)),
    }
}

pub async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let leads = match tenant_leads(&state, &signed).await {
        Ok(leads) => leads,
        Err(response) => return response,
    };
    let config = &signed.config;
    let content = html! {
        p.actions {
            @if signed.can_change() {
                a href=(config.path("/leads/create")) { "New lead" }
                a href=(config.path("/leads/import")) { "Import CSV" }
            }
            a href=(config.path("/leads/export")) download="leads.csv" { "Export CSV" }
        }
        @if leads.is_empty() {
            p role="status" { "No lead yet." }
        } @else {
            div.scroll {
                table #leads {
                    caption.visually-hidden { "Leads" }
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "Name" }
                            th scope="col" { "Type" }
                            th scope="col" { "Contacts" }
                            th scope="col" { "Customer" }
                            th scope="col" { "Created" }
                            @if signed.can_change() { th scope="col" { "Actions" } }
                        }
                    }
                    tbody {
                        @for lead in &leads {
                            tr {
                                td { (lead.number) }
                                td { (lead.name) }
                                td { (lead.r#type) }
                                td { (lead.contacts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")) }
                                td { (if lead.converted_to.is_some() { "yes" } else { "no" }) }
                                td { (lead.created_at.map(instant).unwrap_or_default()) }
                                @if signed.can_change() {
                                    td {
                                        a href=(config.path(&format!("/leads/edit/{}", lead.number))) { "Edit" }
                                        " "
                                        form.inline method="post" action=(config.path(&format!("/leads/delete/{}", lead.number))) {
                                            input type="hidden" name="csrf" value=(signed.session.csrf);
                                            button type="submit" aria-label=(format!("Delete {}", lead.name)) { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Leads", "leads", content))
}

#[derive(Deserialize, Default)]
pub struct LeadForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    contact_email: String,
}

form_token!(LeadForm);

/// The lead form: for a new lead (with a first contact) or an edit.
fn lead_form(signed: &Signed, action: &str, held: &LeadForm, new: bool, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.stack method="post" action=(signed.config.path(action)) {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            label for="name" { "Name" }
            input #name type="text" name="name" value=(held.name) required;
            label for="type" { "Type (university, company, government…)" }
            input #type type="text" name="type" value=(held.r#type) required;
            @if new {
                label for="contact_name" { "Contact's name (optional)" }
                input #contact_name type="text" name="contact_name" value=(held.contact_name);
                label for="contact_email" { "Contact's email (optional)" }
                input #contact_email type="email" name="contact_email" value=(held.contact_email);
            }
            button type="submit" { (if new { "Create lead" } else { "Save" }) }
        }
    }
}

fn checked(form: &LeadForm) -> Result<NewLead, String> {
    let name = parse_lead_text(&form.name).map_err(|why| format!("Name: the name {why}."))?;
    let kind = parse_lead_text(&form.r#type).map_err(|why| format!("Type: the type {why}."))?;
    let mut contacts = Vec::new();
    match (form.contact_name.trim(), form.contact_email.trim()) {
        ("", "") => {}
        ("", _) => return Err("Contact's name: a contact's email needs a name.".to_owned()),
        (contact, email) => {
            let name = parse_lead_text(contact).map_err(|why| format!("Contact's name: the name {why}."))?;
            let email = Some(email)
                .filter(|email| !email.is_empty())
                .map(|email| parse_email(email).map_err(|e| format!("Contact's email: the email {e}.")))
                .transpose()?;
            contacts.push(Contact { name, email });
        }
    }
    Ok(NewLead { name, kind, contacts })
}

pub async fn create_form(signed: Signed) -> Response {
    if !signed.can_change() {
        return problem(&signed.config, StatusCode::FORBIDDEN, "A viewer can see everything and change nothing.");
    }
    let content = lead_form(&signed, "/leads/create", &LeadForm::default(), true, None);
    html_response(StatusCode::OK, page(&signed, "New lead", "leads", content))
}

pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    Change { signed, form }: Change<LeadForm>,
) -> Response {
    let new = match checked(&form) {
        Ok(new) => new,
        Err(message) => {
            let content = lead_form(&signed, "/leads/create", &form, true, Some(&message));
            return html_response(StatusCode::BAD_REQUEST, page(&signed, "New lead", "leads", content));
        }
    };
    let at = Utc::now();
    let tenant_id = signed.session.tenant_id.as_str();
    let metadata = event_metadata(&panel_context(&context), Some(&signed.caller()), tenant_id, at);
    match create_lead(&state.leads, &state.serials, tenant_id, new, &metadata, at).await {
        Ok(_) => Redirect::to(&signed.config.path("/leads/")).into_response(),
        Err(error) => unavailable(&signed.config, "Creating the lead", &error),
    }
}

pub async fn edit_form(State(state): State<AppState>, signed: Signed, Path(raw): Path<String>) -> Response {
    if !signed.can_change() {
        return problem(&signed.config, StatusCode::FORBIDDEN, "A viewer can see everything and change nothing.");
    }
    let lead = match numbered(&state, &signed, &raw).await {
        Ok(lead) => lead,
        Err(response) => return response,
    };
    let held = LeadForm { name: lead.name.clone(), r#type: lead.r#type.clone(), ..LeadForm::default() };
    let content = lead_form(&signed, &format!("/leads/update/{}", lead.number), &held, false, None);
    html_response(StatusCode::OK, page(&signed, &format!("Lead {}", lead.number), "leads", content))
}

/// Runs a command on the tenant's lead numbered `raw`, as the staff member.
async fn change(
    state: &AppState,
    signed: &Signed,
    context: &RequestContext,
    raw: &str,
    command: impl Fn() -> LeadCommand,
) -> Result<(), Response> {
    let lead = numbered(state, signed, raw).await?;
    let metadata =
        event_metadata(&panel_context(context), Some(&signed.caller()), &signed.session.tenant_id, Utc::now());
    match state.leads.execute(&lead.id, command, &metadata).await {
        Ok(_) => Ok(()),
        Err(error) => Err(unavailable(&signed.config, "Changing the lead", &error)),
    }
}

pub async fn update(
    State(state): State<AppState>,
    context: RequestContext,
    Path(raw): Path<String>,
    Change { signed, form }: Change<LeadForm>,
) -> Response {
    let edit = LeadForm { contact_name: String::new(), contact_email: String::new(), ..form };
    let new = match checked(&edit) {
        Ok(new) => new,
        Err(message) => {
            let content = lead_form(&signed, &format!("/leads/update/{raw}"), &edit, false, Some(&message));
            return html_response(StatusCode::BAD_REQUEST, page(&signed, "Edit lead", "leads", content));
        }
    };
    let at = Utc::now();
    let command = || LeadCommand::Update { name: Some(new.name.clone()), r#type: Some(new.kind.clone()), at };
    match change(&state, &signed, &context, &raw, command).await {
        Ok(()) => Redirect::to(&signed.config.path("/leads/")).into_response(),
        Err(response) => response,
    }
}

pub async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    Path(raw): Path<String>,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let at = Utc::now();
    match change(&state, &signed, &context, &raw, || LeadCommand::Delete { at }).await {
        Ok(()) => Redirect::to(&signed.config.path("/leads/")).into_response(),
        Err(response) => response,
    }
}

pub async fn export(State(state): State<AppState>, signed: Signed) -> Response {
    match tenant_leads(&state, &signed).await {
        Ok(leads) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"leads.csv\""),
            ],
            lead_csv::export(&leads),
        )
            .into_response(),
        Err(response) => response,
    }
}

fn import_page(signed: &Signed, error: Option<Markup>) -> Markup {
    let content = html! {
        @if let Some(error) = error {
            div.error role="alert" { (error) }
        }
        p { "A CSV file whose first line names the columns " code { "name,type,contact_name,contact_email" }
            " (the last two optional). Rows of the same name and type are one lead with several contacts. "
            "Every row is checked first: if one is bad, nothing is imported." }
        form.stack method="post" action=(signed.config.path("/leads/import")) enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            label for="csv" { "CSV file" }
            input #csv type="file" name="csv" accept=".csv,text/csv" required;
            button type="submit" { "Import" }
        }
    };
    page(signed, "Import leads", "leads", content)
}

pub async fn import_form(signed: Signed) -> Response {
    if !signed.can_change() {
        return problem(&signed.config, StatusCode::FORBIDDEN, "A viewer can see everything and change nothing.");
    }
    html_response(StatusCode::OK, import_page(&signed, None))
}

/// The import form's fields: its CSRF token and the file's text.
async fn import_fields(mut multipart: Multipart) -> Result<(String, Vec<u8>), String> {
    let (mut csrf, mut csv) = (String::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(|e| e.body_text())? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|e| e.body_text())?,
            Some("csv") => csv = field.bytes().await.map_err(|e| e.body_text())?.to_vec(),
            _ => {}
        }
    }
    Ok((csrf, csv))
}

pub async fn import(
    State(state): State<AppState>,
    signed: Signed,
    context: RequestContext,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let fields = match multipart {
        Ok(multipart) => import_fields(multipart).await,
        Err(rejection) => Err(rejection.body_text()),
    };
    let (csrf, csv) = match fields {
        Ok(fields) => fields,
        Err(why) => {
            return problem(&signed.config, StatusCode::BAD_REQUEST, &format!("The upload could not be read: {why}"))
        }
    };
    if let Err(refused) = signed.may_change(&csrf) {
        return refused;
    }
    let refused = |markup: Markup| html_response(StatusCode::BAD_REQUEST, import_page(&signed, Some(markup)));
    let Ok(text) = std::str::from_utf8(&csv) else {
        return refused(html! { p { "The file is not UTF-8 text." } });
    };
    let leads = match lead_csv::check_import(text) {
        Ok(leads) => leads,
        Err(ImportError::Unreadable(why)) => return refused(html! { p { "The file is not an import: " (why) "." } }),
        Err(ImportError::Rows(rows)) => {
            return refused(html! {
                p { (rows.len()) " bad rows; nothing was imported." }
                ul #bad-rows {
                    @for row in rows.iter().take(200) {
                        li { "Line " (row.line) ", " (row.field) ": " (row.message) }
                    }
                }
            })
        }
    };
    let at = Utc::now();
    let tenant_id = signed.session.tenant_id.as_str();
    let metadata = event_metadata(&panel_context(&context), Some(&signed.caller()), tenant_id, at);
    let count = leads.len();
    for lead in leads {
        if let Err(error) = create_lead(&state.leads, &state.serials, tenant_id, lead, &metadata, at).await {
            let error: &dyn std::fmt::Display = match &error {
                CreateLeadError::Serial(error) => error,
                CreateLeadError::Store(error) => error,
            };
            return unavailable(&signed.config, "Importing the leads", error);
        }
    }
    tracing::info!(count, "panel: leads imported");
    Redirect::to(&signed.config.path("/leads/")).into_response()
}
