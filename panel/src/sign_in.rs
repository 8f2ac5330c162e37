//! Signing in and out, and accepting an invitation (setting a password).
//!
//! The forms here come before any session, so each carries a token that
//! must match a cookie set with the form (a double-submitted token):
//! another site can't sign a browser in to an account of its choosing. A
//! wrong password answers 401, which the front door counts toward the
//! address's progressive block, as it counts a wrong API key; an unknown
//! invitation is a failed guess too.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use keyledger_app::secret::{digests_match, random_token};
use keyledger_app::staff::{normal_email, password_problem};
use keyledger_http::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{bare, html_response, problem};
use crate::session::{cookie, set_cookie, Anyone, Bare, FormToken, COOKIE, PRE_COOKIE};
use crate::PanelConfig;

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// The TOTP code, for those who turned it on.
    #[serde(default)]
    code: String,
    #[serde(default)]
    form: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    form: String,
}

/// The pre-session form token of the request, or a new one to set.
fn form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_COOKIE) {
        Some(token) if token.len() == 32 && token.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            (token.to_owned(), false)
        }
        _ => (random_token(32), true),
    }
}

/// A form page, setting its form-token cookie when it is new.
fn form_page(config: &PanelConfig, status: StatusCode, token: &str, new: bool, markup: Markup) -> Response {
    let mut response = html_response(status, markup);
    if new {
        response.headers_mut().append(header::SET_COOKIE, set_cookie(config, PRE_COOKIE, token, None));
    }
    response
}

/// A form posted before there is a session: its own token (the
/// double-submitted cookie's) must be in it.
fn checked_form<F: PreSession>(
    config: &PanelConfig,
    headers: &HeaderMap,
    form: Result<Form<F>, FormRejection>,
) -> Result<F, Response> {
    let Ok(Form(form)) = form else {
        return Err(problem(config, StatusCode::BAD_REQUEST, "The form was not sent as a form."));
    };
    if !form_matches(headers, form.token()) {
        return Err(problem(
            config,
            StatusCode::FORBIDDEN,
            "This form has expired. Go back, reload the page and try again.",
        ));
    }
    Ok(form)
}

/// A form of the pages before sign-in, with its `form` token field.
trait PreSession {
    fn token(&self) -> &str;
}

macro_rules! pre_session {
    ($($form:ty),+) => {
        $(impl PreSession for $form {
            fn token(&self) -> &str {
                &self.form
            }
        })+
    };
}

pre_session!(SignInForm, PasswordForm, OperatorForm);

/// Whether a posted form carries the token of its cookie.
fn form_matches(headers: &HeaderMap, given: &str) -> bool {
    cookie(headers, PRE_COOKIE).is_some_and(|expected| !given.is_empty() && digests_match(expected, given))
}

fn sign_in_markup(config: &PanelConfig, token: &str, email: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    let content = html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        @if let Some(notice) = notice {
            p.notice role="status" { (notice) }
        }
        form.stack method="post" action=(config.path("/sign-in")) {
            input type="hidden" name="form" value=(token);
            label for="email" { "Email" }
            input #email type="email" name="email" value=(email) autocomplete="username" required;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            label for="code" { "Authentication code (if you turned it on)" }
            input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8";
            button type="submit" { "Sign in" }
        }
        p { a href=(config.path("/operator/sign-in")) { "Sign in as the operator" } }
    };
    bare(config, "Sign in", content)
}

pub async fn form(Extension(config): Extension<Arc<PanelConfig>>, headers: HeaderMap) -> Response {
    let (token, new) = form_token(&headers);
    let notice = None;
    form_page(&config, StatusCode::OK, &token, new, sign_in_markup(&config, &token, "", None, notice))
}

pub async fn submit(
    State(state): State<AppState>,
    Extension(config): Extension<Arc<PanelConfig>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let form = match checked_form(&config, &headers, form) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let (token, _) = form_token(&headers);
    let refused = |email: &str| {
        let markup =
            sign_in_markup(&config, &token, email, Some("Wrong email or password (or authentication code)."), None);
        html_response(StatusCode::UNAUTHORIZED, markup)
    };
    let Some(email) = normal_email(&form.email) else { return refused(form.email.trim()) };
    let signed_in = match state.staff.sign_in(&email, &form.password, &form.code, Utc::now()).await {
        Ok(Some(signed_in)) => signed_in,
        Ok(None) => return refused(&email),
        Err(error) => {
            tracing::error!(error = %error, "panel: signing in failed");
            return problem(&config, StatusCode::SERVICE_UNAVAILABLE, "Signing in is not possible just now.");
        }
    };
    begin_session(&state, &config, &headers, &signed_in.token, "/").await
}

/// The answer that begins a session: any session the browser held before
/// is ended (signing in always begins a new one, so a session id planted
/// before sign-in is useless), and the browser goes to `to`.
async fn begin_session(state: &AppState, config: &PanelConfig, headers: &HeaderMap, token: &str, to: &str) -> Response {
    if let Some(old) = cookie(headers, COOKIE) {
        if let Err(error) = state.staff.end(old).await {
            tracing::warn!(error = %error, "panel: ending the previous session failed");
        }
    }
    let mut response = Redirect::to(&config.path(to)).into_response();
    let lifetime = config.lifetime.num_seconds();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(config, COOKIE, token, Some(lifetime)));
    headers.append(header::SET_COOKIE, set_cookie(config, PRE_COOKIE, "", None));
    response
}

#[derive(Deserialize)]
pub struct OperatorForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    form: String,
}

fn operator_markup(config: &PanelConfig, form: &str, error: Option<&str>) -> Markup {
    let content = html! {
        p { "The operator manages the tenants of this installation, with the operator token it was started with." }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.stack method="post" action=(config.path("/operator/sign-in")) {
            input type="hidden" name="form" value=(form);
            label for="operator-token" { "Operator token" }
            input #operator-token type="password" name="token" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p { a href=(config.path("/sign-in")) { "Staff sign in" } }
    };
    bare(config, "Operator sign in", content)
}

pub async fn operator_form(Extension(config): Extension<Arc<PanelConfig>>, headers: HeaderMap) -> Response {
    let (token, new) = form_token(&headers);
    form_page(&config, StatusCode::OK, &token, new, operator_markup(&config, &token, None))
}

/// Signs the operator in with the operator token. A wrong token answers
/// 401, which counts toward the address's progressive block as a wrong
/// password does.
pub async fn operator_submit(
    State(state): State<AppState>,
    Extension(config): Extension<Arc<PanelConfig>>,
    headers: HeaderMap,
    form: Result<Form<OperatorForm>, FormRejection>,
) -> Response {
    let form = match checked_form(&config, &headers, form) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    if !state.auth.is_operator_token(form.token.trim()) {
        let (token, _) = form_token(&headers);
        return html_response(
            StatusCode::UNAUTHORIZED,
            operator_markup(&config, &token, Some("Wrong operator token.")),
        );
    }
    match state.staff.begin_operator(&state.auth.operator_fingerprint(), Utc::now()).await {
        Ok(signed_in) => {
            tracing::info!("panel: the operator signed in");
            begin_session(&state, &config, &headers, &signed_in.token, "/tenants").await
        }
        Err(error) => {
            tracing::error!(error = %error, "panel: signing the operator in failed");
            problem(&config, StatusCode::SERVICE_UNAVAILABLE, "Signing in is not possible just now.")
        }
    }
}

pub async fn sign_out(
    State(state): State<AppState>,
    Anyone(signed): Anyone,
    headers: HeaderMap,
    form: Result<Form<Bare>, FormRejection>,
) -> Response {
    // A viewer may sign out too: only the token is checked.
    let form = form.map(|Form(form)| form).unwrap_or_default();
    if !keyledger_app::staff::csrf_matches(&signed.session, form.csrf()) {
        return problem(&signed.config, StatusCode::FORBIDDEN, "This form has expired. Reload the page and try again.");
    }
    if let Some(token) = cookie(&headers, COOKIE) {
        if let Err(error) = state.staff.end(token).await {
            tracing::error!(error = %error, "panel: ending a session failed");
            return problem(&signed.config, StatusCode::SERVICE_UNAVAILABLE, "Signing out is not possible just now.");
        }
    }
    let mut response = Redirect::to(&signed.config.path("/sign-in")).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(&signed.config, COOKIE, "", None));
    response
}

fn unknown_invitation(config: &PanelConfig) -> Response {
    let mut response = problem(
        config,
        StatusCode::NOT_FOUND,
        "This invitation is unknown, used or expired. Ask your administrator for a new one.",
    );
    response.extensions_mut().insert(keyledger_http::dialect::FailedGuess);
    response
}

fn invitation_markup(config: &PanelConfig, form: &str, email: &str, token: &str, error: Option<&str>) -> Markup {
    let content = html! {
        p { "Choose a password for " strong { (email) } " (at least 12 characters)." }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.stack method="post" action=(config.path(&format!("/invitation/{token}"))) {
            input type="hidden" name="form" value=(form);
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="new-password" minlength="12" required;
            label for="confirm" { "The same password again" }
            input #confirm type="password" name="confirm" autocomplete="new-password" minlength="12" required;
            button type="submit" { "Set password" }
        }
    };
    bare(config, "Accept the invitation", content)
}

pub async fn invitation_form(
    State(state): State<AppState>,
    Extension(config): Extension<Arc<PanelConfig>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    match state.staff.invited(&token, Utc::now()).await {
        Ok(Some(staff)) => {
            let (form, new) = form_token(&headers);
            form_page(
                &config,
                StatusCode::OK,
                &form,
                new,
                invitation_markup(&config, &form, &staff.email, &token, None),
            )
        }
        Ok(None) => unknown_invitation(&config),
        Err(error) => {
            tracing::error!(error = %error, "panel: reading an invitation failed");
            problem(&config, StatusCode::SERVICE_UNAVAILABLE, "Invitations can't be read just now.")
        }
    }
}

pub async fn accept_invitation(
    State(state): State<AppState>,
    Extension(config): Extension<Arc<PanelConfig>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let form = match checked_form(&config, &headers, form) {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let now = Utc::now();
    let staff = match state.staff.invited(&token, now).await {
        Ok(Some(staff)) => staff,
        Ok(None) => return unknown_invitation(&config),
        Err(error) => {
            tracing::error!(error = %error, "panel: reading an invitation failed");
            return problem(&config, StatusCode::SERVICE_UNAVAILABLE, "Invitations can't be read just now.");
        }
    };
    let problem_with = password_problem(&form.password)
        .or_else(|| (form.password != form.confirm).then(|| "the two passwords differ".to_owned()));
    if let Some(why) = problem_with {
        let message = format!("This password can't be used: {why}.");
        let markup = invitation_markup(&config, &form.form, &staff.email, &token, Some(&message));
        return html_response(StatusCode::BAD_REQUEST, markup);
    }
    match state.staff.accept(&token, &form.password, now).await {
        Ok(true) => {
            let markup =
                sign_in_markup(&config, &form.form, &staff.email, None, Some("Your password is set: sign in."));
            html_response(StatusCode::OK, markup)
        }
        Ok(false) => unknown_invitation(&config),
        Err(error) => {
            tracing::error!(error = %error, "panel: accepting an invitation failed");
            problem(&config, StatusCode::SERVICE_UNAVAILABLE, "The password can't be set just now.")
        }
    }
}
