//! The frame of every page (header, navigation, the global search box,
//! sign out), the error page, and the headers every answer carries.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::session::Signed;
use crate::PanelConfig;

/// No inline script or style, nothing from elsewhere, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every answer of the panel: pages show a tenant's data, so nothing is
/// cached (the static files set their own caching), framed, or sniffed.
pub async fn secure(mut response: Response) -> Response {
    secure_headers(&mut response);
    response
}

/// [`secure`]'s headers on an answer made outside the panel's routes.
pub fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// An HTML answer.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// The document around a page's content.
fn document(config: &PanelConfig, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx may not add inline styles or evaluate strings: the
                // policy forbids both.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · keyledger" }
                link rel="stylesheet" href=(config.path("/assets/panel.css"));
                script src=(config.path("/assets/htmx.min.js")) defer {}
            }
            body { (body) }
        }
    }
}

/// A page of a signed-in staff member: `current` names the section.
pub fn page(signed: &Signed, title: &str, current: &str, content: Markup) -> Markup {
    let config = &signed.config;
    let section = |name: &str, href: &str, label: &str| {
        html! {
            li {
                @if name == current {
                    a href=(config.path(href)) aria-current="page" { (label) }
                } @else {
                    a href=(config.path(href)) { (label) }
                }
            }
        }
    };
    let body = html! {
        a.skip href="#main" { "Skip to content" }
        header.bar {
            a.brand href=(config.path("/")) { "keyledger" }
            nav aria-label="Sections" {
                ul {
                    @if signed.is_operator() {
                        (section("tenants", "/tenants", "Tenants"))
                        (section("audit", "/audit", "Audit"))
                    }
                    @if !signed.session.tenant_id.is_empty() {
                    (section("overview", "/", "Overview"))
                    (section("licenses", "/licenses", "Licenses"))
                    (section("customers", "/customers", "Customers"))
                    (section("products", "/products", "Products"))
                    (section("resources", "/resources", "Resources"))
                    (section("anomalies", "/anomalies", "Anomalies"))
                    (section("webhooks", "/webhooks", "Webhooks"))
                    (section("leads", "/leads/", "Leads"))
                    (section("keys", "/keys", "Keys"))
                    (section("staff", "/staff", "Staff"))
                    }
                    @if !signed.is_operator() {
                        (section("account", "/account", "Account"))
                    }
                }
            }
            @if !signed.session.tenant_id.is_empty() {
                form.search role="search" method="get" action=(config.path("/search")) {
                    label for="global-search" { "Search licenses, customers and devices" }
                    input #global-search type="search" name="q" minlength="2" placeholder="Key, customer or device";
                    button type="submit" { "Search" }
                }
            }
            form.signout method="post" action=(config.path("/sign-out")) {
                span.who {
                    @if signed.is_operator() {
                        "the operator"
                        @if !signed.session.tenant_id.is_empty() { ", in tenant " code { (signed.session.tenant_id) } }
                    } @else {
                        (signed.session.email) " (" (signed.session.role.as_str()) ")"
                    }
                }
                input type="hidden" name="csrf" value=(signed.session.csrf);
                button type="submit" { "Sign out" }
            }
        }
        main #main {
            h1 { (title) }
            (content)
        }
    };
    document(config, title, body)
}

/// A page without the signed-in frame (sign-in, invitations, errors).
pub fn bare(config: &PanelConfig, title: &str, content: Markup) -> Markup {
    document(
        config,
        title,
        html! {
            main #main.narrow {
                h1 { (title) }
                (content)
            }
        },
    )
}

/// An error page with `status`.
pub fn problem(config: &PanelConfig, status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let content = html! {
        p role="alert" { (message) }
        p { a href=(config.path("/")) { "Back to the panel" } }
    };
    html_response(status, bare(config, title, content))
}

/// A 503 for a read or change the stores failed, logged with its cause
/// (which the page does not show).
pub fn unavailable(config: &PanelConfig, what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "panel: {what} failed");
    problem(config, StatusCode::SERVICE_UNAVAILABLE, &format!("{what} is not possible just now."))
}

/// A page that asks before something that can't be undone (so that it
/// works without JavaScript): `question`, a button that posts `action`
/// again with `confirm=yes`, and a way back to `back`.
pub fn confirm(
    signed: &Signed,
    title: &str,
    section: &str,
    question: Markup,
    action: &str,
    button: &str,
    back: &str,
) -> Response {
    let config = &signed.config;
    let content = html! {
        p { (question) }
        form.inline method="post" action=(config.path(action)) {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            input type="hidden" name="confirm" value="yes";
            button type="submit" { (button) }
        }
        " "
        a href=(config.path(back)) { "Keep it" }
    };
    html_response(StatusCode::OK, page(signed, title, section, content))
}
