//! The tenant's panel staff, for its admins: invite (a one-time link,
//! shown once), remove. Viewers see who is there. The operator does the
//! same for any tenant from the tenants' pages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyledger_http::state::AppState;

use crate::layout::{html_response, page, unavailable};
use crate::session::{Bare, Change, Signed};
use crate::tenants::{invite_into, remove_from, staff_sections, InviteForm};

pub async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let staff = match state.staff.of_tenant(&signed.session.tenant_id).await {
        Ok(staff) => staff,
        Err(error) => return unavailable(&signed.config, "Reading the staff", &error),
    };
    let content = staff_sections(&signed, &staff, &signed.config.path("/staff"));
    html_response(StatusCode::OK, page(&signed, "Staff", "staff", content))
}

pub async fn invite(State(state): State<AppState>, Change { signed, form }: Change<InviteForm>) -> Response {
    let tenant_id = signed.session.tenant_id.clone();
    invite_into(&state, &signed, &tenant_id, &form, "/staff").await
}

pub async fn remove(
    State(state): State<AppState>,
    Path(staff_id): Path<String>,
    Change { signed, .. }: Change<Bare>,
) -> Response {
    let tenant_id = signed.session.tenant_id.clone();
    remove_from(&state, &signed, &tenant_id, &staff_id, "/staff").await
}
