//! Who is signed in: the session cookie, read on every page, and the form
//! token (CSRF) every change carries.
//!
//! The cookie holds a random token; the database holds only its SHA-256
//! (`panel_sessions`), so any process serves the session and a copy of
//! the table opens none. The cookie is `HttpOnly`, `SameSite=Strict`,
//! scoped to the panel's path, and `Secure` when the panel is served over
//! HTTPS. A session ends after its idle time or its lifetime, or at sign
//! out; signing in always begins a new one.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use keyledger_app::staff::{csrf_matches, Session, StaffRole, OPERATOR_PREFIX};
use keyledger_http::auth::{Caller, Role};
use keyledger_http::extract::RequestContext;
use keyledger_http::state::AppState;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::layout;
use crate::PanelConfig;

/// The session cookie's name.
pub const COOKIE: &str = "keyledger_panel";
/// The sign-in form's own token, before there is a session (so that a
/// sign-in can't be forged from another site either).
pub const PRE_COOKIE: &str = "keyledger_panel_form";

/// What a form without the session's token is answered.
const EXPIRED_FORM: &str =
    "This form has expired or did not come from this panel. Go back, reload the page and try again.";

/// The value of a cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value for the panel's path: `value` for `max_age`
/// seconds (a session cookie when `None`), or cleared when empty.
pub fn set_cookie(config: &PanelConfig, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let secure = if config.secure_cookies { "; Secure" } else { "" };
    let age = match (value.is_empty(), max_age) {
        (true, _) => "; Max-Age=0".to_owned(),
        (false, Some(secs)) => format!("; Max-Age={secs}"),
        (false, None) => String::new(),
    };
    let text = format!("{name}={value}; Path={}; HttpOnly; SameSite=Strict{secure}{age}", config.base);
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
}

/// A signed-in staff member, with the panel's settings: the extractor of
/// every page but sign-in. Without a live session, a page redirects to
/// the sign-in form (a fragment answers 401).
pub struct Signed {
    pub session: Session,
    pub config: Arc<PanelConfig>,
}

impl Signed {
    pub fn can_change(&self) -> bool {
        matches!(self.session.role, StaffRole::Admin | StaffRole::Operator)
    }

    pub fn is_operator(&self) -> bool {
        self.session.role == StaffRole::Operator
    }

    /// The caller recorded as the actor of what this person changes: the
    /// staff member, by id (or the operator), with the tenant admin's
    /// rights in the tenant the page shows.
    pub fn caller(&self) -> Caller {
        let (key_id, user_id) = if self.is_operator() {
            ("operator".to_owned(), "operator".to_owned())
        } else {
            (format!("staff:{}", self.session.staff_id), self.session.staff_id.clone())
        };
        Caller { key_id, role: Role::Admin, tenant_id: Some(self.session.tenant_id.clone()), user_id: Some(user_id) }
    }

    /// Refuses a change without the session's form token, or by a viewer.
    pub fn may_change(&self, csrf: &str) -> Result<(), Response> {
        if !csrf_matches(&self.session, csrf) {
            return Err(layout::problem(&self.config, StatusCode::FORBIDDEN, EXPIRED_FORM));
        }
        if !self.can_change() {
            return Err(layout::problem(
                &self.config,
                StatusCode::FORBIDDEN,
                "A viewer can see everything and change nothing.",
            ));
        }
        Ok(())
    }
}

/// The request's context as the panel's: events record `panel` as the
/// API they came through.
pub fn panel_context(context: &RequestContext) -> RequestContext {
    RequestContext { api: "panel", ..context.clone() }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    /// A page of a tenant: an operator who has opened none is sent to
    /// the tenants.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let signed = Anyone::from_request_parts(parts, state).await?.0;
        if signed.session.tenant_id.is_empty() {
            return Err(Redirect::to(&signed.config.path("/tenants")).into_response());
        }
        Ok(signed)
    }
}

/// The operator, signed in: the extractor of the tenants' pages.
pub struct Operator(pub Signed);

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let signed = Anyone::from_request_parts(parts, state).await?.0;
        if !signed.is_operator() {
            return Err(layout::problem(&signed.config, StatusCode::FORBIDDEN, "Only the operator manages tenants."));
        }
        Ok(Operator(signed))
    }
}

/// Whoever holds a live session, operator or staff, in a tenant or not.
pub struct Anyone(pub Signed);

impl FromRequestParts<AppState> for Anyone {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let config = parts
            .extensions
            .get::<Arc<PanelConfig>>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let sign_in = || {
            if parts.headers.contains_key("hx-request") {
                (StatusCode::UNAUTHORIZED, [("hx-redirect", config.path("/sign-in"))]).into_response()
            } else {
                Redirect::to(&config.path("/sign-in")).into_response()
            }
        };
        let Some(token) = cookie(&parts.headers, COOKIE) else { return Err(sign_in()) };
        match state.staff.session(token, config.idle, config.lifetime, Utc::now()).await {
            // An operator session opened with another operator token
            // (the server restarted with a new one) is over.
            Ok(Some(session))
                if session.role == StaffRole::Operator
                    && session.staff_id.strip_prefix(OPERATOR_PREFIX)
                        != Some(state.auth.operator_fingerprint().as_str()) =>
            {
                Err(sign_in())
            }
            Ok(Some(session)) => Ok(Anyone(Signed { session, config: config.clone() })),
            Ok(None) => Err(sign_in()),
            Err(error) => {
                tracing::error!(error = %error, "panel: reading a session failed");
                Err(layout::problem(
                    &config,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The panel cannot read sessions just now.",
                ))
            }
        }
    }
}

/// A form that carries the session's form token (CSRF) in its `csrf`
/// field.
pub trait FormToken {
    fn csrf(&self) -> &str;
}

/// A form with no fields but its token: a button that changes something.
#[derive(Deserialize, Default)]
pub struct Bare {
    #[serde(default)]
    csrf: String,
}

impl FormToken for Bare {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A change posted by a signed-in staff member who may make it: the
/// extractor of every handler that changes something. The form's token
/// must be the session's, and a viewer is refused, before the handler
/// runs; a form that does not parse counts as one without its token.
pub struct Change<F> {
    pub signed: Signed,
    pub form: F,
}

impl<F> FromRequest<AppState> for Change<F>
where
    F: DeserializeOwned + Default + FormToken + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (signed, form) = with_form::<Signed, F>(request, state).await?;
        signed.may_change(form.csrf())?;
        Ok(Change { signed, form })
    }
}

/// A change posted by the operator (the tenants' pages), its form token
/// checked as [`Change`] checks it.
pub struct OperatorChange<F> {
    pub signed: Signed,
    pub form: F,
}

impl<F> FromRequest<AppState> for OperatorChange<F>
where
    F: DeserializeOwned + Default + FormToken + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (Operator(signed), form) = with_form::<Operator, F>(request, state).await?;
        signed.may_change(form.csrf())?;
        Ok(OperatorChange { signed, form })
    }
}

/// A change of one's own account (a viewer's too), its form token
/// checked.
pub struct OwnChange<F> {
    pub signed: Signed,
    pub form: F,
}

impl<F> FromRequest<AppState> for OwnChange<F>
where
    F: DeserializeOwned + Default + FormToken + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (signed, form) = with_form::<Signed, F>(request, state).await?;
        if !csrf_matches(&signed.session, form.csrf()) {
            return Err(layout::problem(&signed.config, StatusCode::FORBIDDEN, EXPIRED_FORM));
        }
        Ok(OwnChange { signed, form })
    }
}

/// The signed-in person (`who`) and the posted form; a form that does not
/// parse reads as empty, so its token fails the check that follows.
async fn with_form<Who, F>(request: Request, state: &AppState) -> Result<(Who, F), Response>
where
    Who: FromRequestParts<AppState, Rejection = Response>,
    F: DeserializeOwned + Default + Send,
{
    let (mut parts, body) = request.into_parts();
    let who = Who::from_request_parts(&mut parts, state).await?;
    let request = Request::from_parts(parts, body);
    let form = Form::<F>::from_request(request, state).await.map(|Form(form)| form).unwrap_or_default();
    Ok((who, form))
}
