//! One's own account: who one is, and two-factor sign-in with an
//! authenticator app (TOTP), turned on by confirming a code from the new
//! secret and off by giving a current code. Viewers manage their own too.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use keyledger_app::totp;
use keyledger_http::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{Bare, OwnChange, Signed};

/// What authenticator apps list the account under.
const ISSUER: &str = "keyledger";

pub async fn show(State(state): State<AppState>, signed: Signed) -> Response {
    let config = &signed.config;
    let enabled = match state.staff.totp_enabled(&signed.session.staff_id).await {
        Ok(enabled) => enabled,
        Err(error) => return unavailable(config, "Reading the account", &error),
    };
    let content = html! {
        dl.facts {
            div { dt { "Email" } dd { (signed.session.email) } }
            div { dt { "Role" } dd { (signed.session.role.as_str()) } }
            div { dt { "Two-factor sign-in" } dd #totp-status { @if enabled { "on" } @else { "off" } } }
        }
        section aria-labelledby="totp" {
            h2 #totp { "Two-factor sign-in" }
            @if enabled {
                p { "Signing in asks for a code from your authenticator app. To turn it off, give a current code." }
                form.filters method="post" action=(config.path("/account/totp/disable")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="code" { "Code" } input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8" required; }
                    button type="submit" { "Turn off" }
                }
            } @else {
                p { "With it on, signing in also asks for a six-digit code from an authenticator app." }
                form.inline method="post" action=(config.path("/account/totp")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    button type="submit" { "Set up" }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Account", "account", content))
}

/// The QR code of `text`, as SVG squares (no script, no inline style).
fn qr(text: &str) -> Markup {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else { return html! {} };
    let width = code.width();
    let colors = code.to_colors();
    let mut path = String::new();
    for (n, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            // A quiet zone of 4 modules around the code, as readers need.
            path.push_str(&format!("M{} {}h1v1h-1z", n % width + 4, n / width + 4));
        }
    }
    let size = width + 8;
    html! {
        svg.qr viewBox=(format!("0 0 {size} {size}")) role="img" aria-label="QR code of the secret for an authenticator app" {
            rect.qr-paper x="0" y="0" width=(size) height=(size) {}
            path.qr-ink d=(path) {}
        }
    }
}

/// A new secret, shown with its QR code, and the form that confirms it.
pub async fn begin(State(state): State<AppState>, OwnChange { signed, .. }: OwnChange<Bare>) -> Response {
    let config = &signed.config;
    let secret = match state.staff.totp_begin(&signed.session.staff_id).await {
        Ok(secret) => secret,
        Err(error) => return unavailable(config, "Setting up two-factor sign-in", &error),
    };
    let uri = totp::otpauth_uri(ISSUER, &signed.session.email, &secret);
    let typed = totp::base32(&secret);
    let content = html! {
        p { "Scan this with your authenticator app, or type the key in; then give the code it shows." }
        (qr(&uri))
        p { "Key: " code #totp-secret { (typed) } }
        form.filters method="post" action=(config.path("/account/totp/confirm")) {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            div { label for="code" { "Code" } input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8" required; }
            button type="submit" { "Turn on" }
        }
    };
    html_response(StatusCode::OK, page(&signed, "Set up two-factor sign-in", "account", content))
}

#[derive(Deserialize, Default)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

form_token!(CodeForm);

pub async fn confirm(State(state): State<AppState>, OwnChange { signed, form }: OwnChange<CodeForm>) -> Response {
    let config = &signed.config;
    match state.staff.totp_confirm(&signed.session.staff_id, &form.code, Utc::now()).await {
        Ok(true) => {
            tracing::info!(staff_id = %signed.session.staff_id, "panel: two-factor sign-in turned on");
            Redirect::to(&config.path("/account")).into_response()
        }
        Ok(false) => problem(
            config,
            StatusCode::BAD_REQUEST,
            "Code: not the code of the new key. Set up again and give the code your app shows now.",
        ),
        Err(error) => unavailable(config, "Turning on two-factor sign-in", &error),
    }
}

pub async fn disable(State(state): State<AppState>, OwnChange { signed, form }: OwnChange<CodeForm>) -> Response {
    let config = &signed.config;
    match state.staff.totp_disable(&signed.session.staff_id, &form.code, Utc::now()).await {
        Ok(true) => {
            tracing::info!(staff_id = %signed.session.staff_id, "panel: two-factor sign-in turned off");
            Redirect::to(&config.path("/account")).into_response()
        }
        Ok(false) => problem(config, StatusCode::BAD_REQUEST, "Code: not a current code of your app."),
        Err(error) => unavailable(config, "Turning off two-factor sign-in", &error),
    }
}
