//! Anomalies: the tenant's, filtered by kind and state, each resolvable
//! (as the API resolves one, [`keyledger_app::anomalies::resolve`]); and
//! the licenses the detector suspended, each with a one-click reinstate.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use keyledger_app::anomalies::{AnomalyFilter, ResolveError};
use keyledger_domain::{AnomalyKind, LicenseStatus};
use keyledger_http::extract::RequestContext;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::html;
use serde::Deserialize;

use crate::layout::{html_response, page, problem};
use crate::session::{panel_context, Change, Signed};

/// Anomalies a page lists at most.
const LISTED: i64 = 200;

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = &signed.config;
    let query = query.map(|Query(query)| query).unwrap_or_default();
    let kind = query.get("kind").map(|kind| kind.trim()).filter(|kind| !kind.is_empty());
    if let Some(kind) = kind {
        if AnomalyKind::parse(kind).is_none() {
            return problem(config, StatusCode::BAD_REQUEST, "kind is not a kind of anomaly.");
        }
    }
    let show_resolved = query.get("state").map(String::as_str) == Some("all");
    let filter = AnomalyFilter {
        kind: kind.map(str::to_owned),
        resolved: (!show_resolved).then_some(false),
        limit: LISTED,
        ..AnomalyFilter::default()
    };
    let tenant_id = signed.session.tenant_id.as_str();
    let anomalies = match state.anomaly_settings.store().list(Some(tenant_id), &filter).await {
        Ok(anomalies) => anomalies,
        Err(error) => {
            tracing::error!(error = %error, "panel: listing anomalies failed");
            return problem(config, StatusCode::SERVICE_UNAVAILABLE, "The anomalies can't be read just now.");
        }
    };
    let now = Utc::now();
    let suspended = state
        .client
        .tenant_licenses_where(tenant_id, |license| {
            !license.deleted
                && license.status_at(now) == LicenseStatus::Suspended
                && license.suspension_reason.as_deref().is_some_and(|reason| reason.starts_with("anomaly: "))
        })
        .await;
    let kinds = AnomalyKind::ALL.iter().map(|kind| kind.as_str());
    let content = html! {
        form.filters method="get" action=(config.path("/anomalies")) {
            div {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    option value="" selected[kind.is_none()] { "Any" }
                    @for name in kinds {
                        option value=(name) selected[kind == Some(name)] { (name) }
                    }
                }
            }
            div {
                label for="state" { "Show" }
                select #state name="state" {
                    option value="open" selected[!show_resolved] { "Unresolved" }
                    option value="all" selected[show_resolved] { "All" }
                }
            }
            button type="submit" { "Filter" }
        }
        @if anomalies.is_empty() {
            p role="status" { "No anomaly." }
        } @else {
            div.scroll {
                table #anomalies {
                    caption.visually-hidden { "Anomalies" }
                    thead {
                        tr {
                            th scope="col" { "Detected" }
                            th scope="col" { "Kind" }
                            th scope="col" { "License" }
                            th scope="col" { "State" }
                        }
                    }
                    tbody {
                        @for anomaly in &anomalies {
                            tr {
                                td { (anomaly.detected_at) }
                                td { (anomaly.kind) }
                                td { a href=(config.path(&format!("/licenses/{}", anomaly.license_id))) { (anomaly.license_id) } }
                                td {
                                    @if let Some(at) = &anomaly.resolved_at {
                                        "resolved " (at)
                                    } @else if signed.can_change() {
                                        form.inline method="post" action=(config.path(&format!("/anomalies/{}/resolve", anomaly.id))) {
                                            input type="hidden" name="csrf" value=(signed.session.csrf);
                                            label.visually-hidden for=(format!("note-{}", anomaly.id)) { "Note" }
                                            input id=(format!("note-{}", anomaly.id)) type="text" name="note" placeholder="Note (optional)";
                                            " "
                                            button type="submit" { "Resolve" }
                                        }
                                    } @else {
                                        "unresolved"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="suspended" {
            h2 #suspended { "Suspended by the detector" }
            @if suspended.is_empty() {
                p { "None." }
            } @else {
                ul {
                    @for license in &suspended {
                        li {
                            a href=(config.path(&format!("/licenses/{}", license.id))) {
                                code { (license.license_key.as_ref().map(|key| key.as_str()).unwrap_or_default()) }
                            }
                            " — " (license.suspension_reason.as_deref().unwrap_or_default()) " "
                            @if signed.can_change() {
                                form.inline method="post" action=(config.path(&format!("/licenses/{}/reinstate", license.id))) {
                                    input type="hidden" name="csrf" value=(signed.session.csrf);
                                    button type="submit" { "Reinstate" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Anomalies", "anomalies", content))
}

#[derive(Deserialize, Default)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

form_token!(ResolveForm);

/// A note's longest length, as the API's.
const MAX_NOTE: usize = 1000;

pub async fn resolve(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<String>,
    Change { signed, form }: Change<ResolveForm>,
) -> Response {
    let config = &signed.config;
    let note = Some(form.note.trim().to_owned()).filter(|note| !note.is_empty());
    if let Some(note) = &note {
        if note.chars().count() > MAX_NOTE || keyledger_domain::check_display_text(note).is_err() {
            return problem(config, StatusCode::BAD_REQUEST, "Note: at most 1000 characters of text.");
        }
    }
    let caller = signed.caller();
    let context = panel_context(&context);
    let resolved = keyledger_app::anomalies::resolve(
        &state.licenses,
        state.anomaly_settings.store(),
        Some(&signed.session.tenant_id),
        &id,
        note,
        &caller.key_id,
        |anomaly, at| event_metadata(&context, Some(&caller), &anomaly.tenant_id, at),
    )
    .await;
    match resolved {
        Ok(_) | Err(ResolveError::Resolved) => Redirect::to(&config.path("/anomalies")).into_response(),
        Err(ResolveError::NotFound) => problem(config, StatusCode::NOT_FOUND, "There is no such anomaly."),
        Err(error) => {
            tracing::error!(error = %error, "panel: resolving an anomaly failed");
            problem(config, StatusCode::SERVICE_UNAVAILABLE, "The anomaly could not be resolved just now.")
        }
    }
}
