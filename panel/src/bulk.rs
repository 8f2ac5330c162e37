//! The licenses list's bulk select: the licenses ticked, switched on
//! (reinstated), off (suspended) or deleted, one command each as the V2
//! dialect's bulk operations run them ([`keyledger_app::switch`]), and a
//! page that says what changed and what did not, and why.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyledger_app::switch::{Bulk, Switch, SwitchError};
use keyledger_http::extract::RequestContext;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::html;
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{panel_context, Change, FormToken};

/// Licenses one bulk change names at most (a page of the list is 50).
const MAX_BULK: usize = 1000;

/// The posted form as its pairs: `id` repeats, once per license ticked.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct BulkForm(Vec<(String, String)>);

impl BulkForm {
    fn value(&self, name: &str) -> &str {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).unwrap_or_default()
    }

    fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.0.iter().filter(|(key, _)| key == "id").map(|(_, value)| value.trim()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl FormToken for BulkForm {
    fn csrf(&self) -> &str {
        self.value("csrf")
    }
}

/// Asks before deleting the ticked licenses (a page, so that it works
/// without JavaScript): the same form again, confirmed.
fn confirm_deletion(signed: &crate::session::Signed, ids: &[&str]) -> Response {
    let config = &signed.config;
    let content = html! {
        p { "Delete " (ids.len()) " licenses? Their clients are refused from then on, and they leave the lists. Their history stays in the log." }
        form.inline method="post" action=(config.path("/licenses/bulk")) {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            input type="hidden" name="action" value="delete";
            input type="hidden" name="confirm" value="yes";
            @for id in ids { input type="hidden" name="id" value=(id); }
            button type="submit" { "Delete the licenses" }
        }
        " "
        a href=(config.path("/licenses")) { "Keep them" }
    };
    html_response(StatusCode::OK, page(signed, "Delete licenses", "licenses", content))
}

/// Why a ticked license was left as it was.
enum Unchanged {
    NotFound,
    AlreadySo,
    Refused(String),
}

pub async fn run(
    State(state): State<AppState>,
    context: RequestContext,
    Change { signed, form }: Change<BulkForm>,
) -> Response {
    let config = &signed.config;
    let bulk = match form.value("action") {
        "activate" => Bulk::Activate,
        "deactivate" => Bulk::Deactivate,
        "delete" => Bulk::Delete,
        _ => return problem(config, StatusCode::BAD_REQUEST, "Action: activate, deactivate or delete."),
    };
    let ids = form.ids();
    if ids.is_empty() || ids.len() > MAX_BULK {
        return problem(
            config,
            StatusCode::BAD_REQUEST,
            &format!("Tick from 1 to {MAX_BULK} licenses, then choose what to do to them."),
        );
    }
    if bulk == Bulk::Delete && form.value("confirm") != "yes" {
        return confirm_deletion(&signed, &ids);
    }
    let tenant_id = signed.session.tenant_id.as_str();
    let caller = signed.caller();
    let context = panel_context(&context);
    let switch = Switch {
        licenses: &state.licenses,
        resources: &state.resources,
        metadata: |at| event_metadata(&context, Some(&caller), tenant_id, at),
    };
    let reason = format!("by {}", signed.session.email);
    let mut changed = Vec::new();
    let mut unchanged = Vec::new();
    for id in ids {
        let license = match uuid::Uuid::parse_str(id) {
            Ok(_) => match state.licenses.load(id).await {
                Ok((license, _, _)) if crate::licenses::shown_in(&license, tenant_id) => license,
                Ok(_) => {
                    unchanged.push((id.to_owned(), Unchanged::NotFound));
                    continue;
                }
                Err(error) => return unavailable(config, "Reading the licenses", &error),
            },
            Err(_) => {
                unchanged.push((id.to_owned(), Unchanged::NotFound));
                continue;
            }
        };
        let key = license.license_key.as_ref().map(|key| key.as_str().to_owned()).unwrap_or_else(|| id.to_owned());
        match switch.apply(&license, bulk, &reason).await {
            Ok(Some(_)) => changed.push(key),
            Ok(None) => unchanged.push((key, Unchanged::AlreadySo)),
            Err(SwitchError::License(keyledger_app::CommandError::Refused(refusal))) => {
                unchanged.push((key, Unchanged::Refused(refusal.to_string())))
            }
            Err(error) => return unavailable(config, "Changing the licenses", &error),
        }
    }
    let already = match bulk {
        Bulk::Activate => "already active",
        Bulk::Deactivate => "already suspended",
        Bulk::Delete => "already deleted",
    };
    let content = html! {
        p role="status" #bulk-outcome { (changed.len()) " licenses " (bulk.past()) "." }
        @if !changed.is_empty() {
            ul #bulk-changed { @for key in &changed { li { code { (key) } } } }
        }
        @if !unchanged.is_empty() {
            h2 { "Left as they were" }
            ul #bulk-unchanged {
                @for (key, why) in &unchanged {
                    li {
                        code { (key) } ": "
                        @match why {
                            Unchanged::NotFound => "no such license",
                            Unchanged::AlreadySo => (already),
                            Unchanged::Refused(reason) => (reason),
                        }
                    }
                }
            }
        }
        p { a href=(config.path("/licenses")) { "Back to the licenses" } }
    };
    html_response(StatusCode::OK, page(&signed, "Bulk change", "licenses", content))
}
