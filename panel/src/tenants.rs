//! The operator's pages: every tenant of the installation, a new tenant
//! (with its first admin API key, shown once), each tenant's panel staff
//! (invited with a one-time link, removed), and opening a tenant to run
//! it from the other pages as its admin would.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use keyledger_app::staff::{normal_email, StaffRole, INVITATION_TTL};
use keyledger_http::instant;
use keyledger_http::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{cookie, Bare, Operator, OperatorChange, Signed, COOKIE};

/// The tenant with this id, or a 404 page.
async fn tenant(state: &AppState, signed: &Signed, raw_id: &str) -> Result<keyledger_app::tenancy::Tenant, Response> {
    match state.tenancy.tenant(raw_id.trim()).await {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(problem(&signed.config, StatusCode::NOT_FOUND, "There is no such tenant.")),
        Err(error) => Err(unavailable(&signed.config, "Reading the tenants", &error)),
    }
}

pub async fn list(State(state): State<AppState>, Operator(signed): Operator) -> Response {
    let config = &signed.config;
    let tenants = match state.tenancy.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => return unavailable(config, "Reading the tenants", &error),
    };
    let content = html! {
        section aria-labelledby="new-tenant" {
            h2 #new-tenant { "New tenant" }
            form.filters method="post" action=(config.path("/tenants")) {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                div { label for="tenant-name" { "Name" } input #tenant-name type="text" name="name" required maxlength="200"; }
                button type="submit" { "Create" }
            }
        }
        section aria-labelledby="tenant-list-title" {
            h2 #tenant-list-title { "Tenants" }
            @if tenants.is_empty() {
                p { "No tenant yet." }
            } @else {
                div.scroll {
                    table #tenant-list {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Created" } th scope="col" { "Actions" } } }
                        tbody {
                            @for (tenant, created_at) in &tenants {
                                tr {
                                    td { a href=(config.path(&format!("/tenants/{}", tenant.id))) { (tenant.name) } }
                                    td { code { (tenant.id) } }
                                    td { (created_at) }
                                    td {
                                        form.inline method="post" action=(config.path(&format!("/tenants/{}/open", tenant.id))) {
                                            input type="hidden" name="csrf" value=(signed.session.csrf);
                                            button type="submit" aria-label=(format!("Open {}", tenant.name)) { "Open" }
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
    html_response(StatusCode::OK, page(&signed, "Tenants", "tenants", content))
}

#[derive(Deserialize, Default)]
pub struct TenantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

form_token!(TenantForm);

pub async fn create(
    State(state): State<AppState>,
    OperatorChange { signed, form }: OperatorChange<TenantForm>,
) -> Response {
    let config = &signed.config;
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 200 || keyledger_domain::check_display_text(name).is_err() {
        return problem(config, StatusCode::BAD_REQUEST, "Name: from 1 to 200 characters of text.");
    }
    let (tenant, admin_key) = match state.tenancy.create_tenant(name).await {
        Ok(created) => created,
        Err(error) => return unavailable(config, "Creating the tenant", &error),
    };
    if let Err(error) = state.directory.add_tenant(&tenant.id).await {
        return unavailable(config, "Making the tenant's signing keys", &error);
    }
    tracing::info!(tenant_id = %tenant.id, "tenant created in the panel");
    let content = html! {
        p role="status" { "Tenant " strong { (tenant.name) } " is created, with id " code #new-tenant-id { (tenant.id) } "." }
        p { "Its first admin API key, shown once: copy it now. keyledger keeps only its hash." }
        p { code #new-admin-key { (admin_key.key) } }
        p { a href=(config.path(&format!("/tenants/{}", tenant.id))) { "Invite the tenant's staff" } }
    };
    html_response(StatusCode::CREATED, page(&signed, "New tenant", "tenants", content))
}

pub async fn show(State(state): State<AppState>, Operator(signed): Operator, Path(raw_id): Path<String>) -> Response {
    let config = &signed.config;
    let tenant = match tenant(&state, &signed, &raw_id).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let staff = match state.staff.of_tenant(&tenant.id).await {
        Ok(staff) => staff,
        Err(error) => return unavailable(config, "Reading the staff", &error),
    };
    let content = html! {
        p { "Id " code { (tenant.id) } }
        form.inline method="post" action=(config.path(&format!("/tenants/{}/open", tenant.id))) {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            button type="submit" { "Open this tenant" }
        }
        (staff_sections(&signed, &staff, &config.path(&format!("/tenants/{}/staff", tenant.id))))
    };
    html_response(StatusCode::OK, page(&signed, &format!("Tenant {}", tenant.name), "tenants", content))
}

/// A tenant's staff with a form to invite more: `base` is where the
/// forms post (`…/staff`, `…/staff/{id}/remove`). Only those who may
/// change see the forms.
pub fn staff_sections(signed: &Signed, staff: &[keyledger_app::staff::Staff], base: &str) -> Markup {
    let yourself = |member: &keyledger_app::staff::Staff| member.id == signed.session.staff_id;
    html! {
        @if signed.can_change() {
            section aria-labelledby="invite" {
                h2 #invite { "Invite staff" }
                p { "The invitation is a one-time link, shown once on the next page, for you to pass on: keyledger sends no mail." }
                form.filters method="post" action=(base) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="email" { "Email" } input #email type="email" name="email" required; }
                    div {
                        label for="role" { "Role" }
                        select #role name="role" {
                            option value="admin" { "Admin" }
                            option value="viewer" { "Viewer" }
                        }
                    }
                    button type="submit" { "Invite" }
                }
            }
        }
        section aria-labelledby="staff-title" {
            h2 #staff-title { "Staff" }
            @if staff.is_empty() {
                p { "No one yet." }
            } @else {
                ul #staff-list {
                    @for member in staff {
                        li {
                            (member.email) " (" (member.role.as_str()) ")"
                            @if !member.active { " — invited" }
                            @if yourself(member) { " — you" }
                            @if signed.can_change() && !yourself(member) {
                                " "
                                form.inline method="post" action=(format!("{base}/{}/remove", member.id)) {
                                    input type="hidden" name="csrf" value=(signed.session.csrf);
                                    button type="submit" aria-label=(format!("Remove {}", member.email)) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Invites `form`'s person into the tenant; the page shows the link once
/// and leads back to `back`.
pub async fn invite_into(
    state: &AppState,
    signed: &Signed,
    tenant_id: &str,
    form: &InviteForm,
    back: &str,
) -> Response {
    let config = &signed.config;
    let Some(email) = normal_email(&form.email) else {
        return problem(config, StatusCode::BAD_REQUEST, "Email: an address such as ana@example.com.");
    };
    let Some(role) = StaffRole::parse(form.role.trim()) else {
        return problem(config, StatusCode::BAD_REQUEST, "Role: admin or viewer.");
    };
    let now = Utc::now();
    let invitation = match state.staff.invite(tenant_id, &email, role, now).await {
        Ok(Some(invitation)) => invitation,
        Ok(None) => {
            return problem(config, StatusCode::CONFLICT, "This email is taken: it signs in to a panel already.")
        }
        Err(error) => return unavailable(config, "Inviting", &error),
    };
    tracing::info!(tenant_id, staff_id = %invitation.staff.id, "panel: staff invited");
    let link = config.path(&format!("/invitation/{}", invitation.token));
    let content = html! {
        p role="status" { "Send this one-time link to " strong { (email) } ". It works once, until " (instant(now + INVITATION_TTL)) "; keyledger keeps only its hash." }
        p { code #invitation-link { (link) } }
        p { a href=(config.path(back)) { "Back" } }
    };
    html_response(StatusCode::CREATED, page(signed, "Invitation", "staff", content))
}

/// Removes a staff member of the tenant (their sessions end with them).
pub async fn remove_from(state: &AppState, signed: &Signed, tenant_id: &str, staff_id: &str, back: &str) -> Response {
    let config = &signed.config;
    if staff_id == signed.session.staff_id {
        return problem(config, StatusCode::CONFLICT, "You can't remove yourself; ask another admin.");
    }
    match state.staff.remove(tenant_id, staff_id.trim()).await {
        Ok(true) => Redirect::to(&config.path(back)).into_response(),
        Ok(false) => problem(config, StatusCode::NOT_FOUND, "There is no such staff member."),
        Err(error) => unavailable(config, "Removing the staff member", &error),
    }
}

#[derive(Deserialize, Default)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

form_token!(InviteForm);

pub async fn invite(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    OperatorChange { signed, form }: OperatorChange<InviteForm>,
) -> Response {
    let tenant = match tenant(&state, &signed, &raw_id).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    invite_into(&state, &signed, &tenant.id, &form, &format!("/tenants/{}", tenant.id)).await
}

pub async fn remove_staff(
    State(state): State<AppState>,
    Path((raw_id, staff_id)): Path<(String, String)>,
    OperatorChange { signed, .. }: OperatorChange<Bare>,
) -> Response {
    let tenant = match tenant(&state, &signed, &raw_id).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    remove_from(&state, &signed, &tenant.id, &staff_id, &format!("/tenants/{}", tenant.id)).await
}

/// Points the operator's session at the tenant: the other pages then show
/// it, and what the operator changes there is recorded as the operator's.
pub async fn open(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    OperatorChange { signed, .. }: OperatorChange<Bare>,
) -> Response {
    let config = &signed.config;
    let tenant = match tenant(&state, &signed, &raw_id).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let Some(token) = cookie(&headers, COOKIE) else {
        return Redirect::to(&config.path("/operator/sign-in")).into_response();
    };
    match state.staff.open_tenant(token, &tenant.id).await {
        Ok(()) => Redirect::to(&config.path("/")).into_response(),
        Err(error) => unavailable(config, "Opening the tenant", &error),
    }
}

/// Checkpoints the audit page lists.
const CHECKPOINTS: i64 = 20;

/// The log's signed checkpoints (they cover every tenant, so they are the
/// operator's): the newest, one signed now on request, and a download
/// of them as JSON for an auditor to keep.
pub async fn audit(State(state): State<AppState>, Operator(signed): Operator) -> Response {
    let config = &signed.config;
    let checkpoints = match state.checkpoints.list(CHECKPOINTS).await {
        Ok(checkpoints) => checkpoints,
        Err(error) => return unavailable(config, "Reading the checkpoints", &error),
    };
    let content = html! {
        p { "Each checkpoint is signed with the key " code #audit-key { (state.checkpoints.public_key_hex()) } ". Keep one outside the system; "
            code { "keyledger audit verify --checkpoint FILE --public-key KEY" } " tells whether the log still holds what it covers." }
        form.inline method="post" action=(config.path("/audit/checkpoints")) {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            button type="submit" { "Sign a checkpoint now" }
        }
        @if checkpoints.is_empty() {
            p { "No checkpoint yet." }
        } @else {
            div.scroll {
                table #checkpoints {
                    thead { tr { th scope="col" { "Signed" } th scope="col" { "Position" } th scope="col" { "Licenses" } th scope="col" { "Events" } th scope="col" { "Heads digest" } th scope="col" { "File" } } }
                    tbody {
                        @for checkpoint in &checkpoints {
                            tr {
                                td { (checkpoint.body.created_at) }
                                td { (checkpoint.body.cursor.position) }
                                td { (checkpoint.body.licenses) }
                                td { (checkpoint.body.events) }
                                td { code { (checkpoint.body.heads_digest.chars().take(16).collect::<String>()) "…" } }
                                td { a href=(config.path(&format!("/audit/checkpoints/{}", checkpoint.body.cursor.position))) { "Download" } }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Audit checkpoints", "audit", content))
}

/// Checkpoints a download looks among.
const DOWNLOADABLE: i64 = 1000;

/// One checkpoint (by the log position it covers) as a file, the shape
/// `keyledger audit verify --checkpoint` reads.
pub async fn download_checkpoint(
    State(state): State<AppState>,
    Operator(signed): Operator,
    Path(raw_position): Path<String>,
) -> Response {
    let config = &signed.config;
    let not_found = || problem(config, StatusCode::NOT_FOUND, "There is no such checkpoint.");
    let Ok(position) = raw_position.trim().parse::<i64>() else { return not_found() };
    let checkpoints = match state.checkpoints.list(DOWNLOADABLE).await {
        Ok(checkpoints) => checkpoints,
        Err(error) => return unavailable(config, "Reading the checkpoints", &error),
    };
    let Some(checkpoint) = checkpoints.iter().find(|checkpoint| checkpoint.body.cursor.position == position) else {
        return not_found();
    };
    let disposition = format!("attachment; filename=\"keyledger-checkpoint-{position}.json\"");
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/json".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        serde_json::to_string_pretty(checkpoint).unwrap_or_default(),
    )
        .into_response()
}

pub async fn sign_checkpoint(
    State(state): State<AppState>,
    OperatorChange { signed, .. }: OperatorChange<Bare>,
) -> Response {
    let config = &signed.config;
    match state.checkpoints.create(Utc::now()).await {
        Ok(Some(_)) => Redirect::to(&config.path("/audit")).into_response(),
        Ok(None) => problem(config, StatusCode::CONFLICT, "The log has no events to checkpoint yet."),
        Err(error) => unavailable(config, "Signing a checkpoint", &error),
    }
}
