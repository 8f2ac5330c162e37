//! The admin panel: server-rendered pages for a vendor's staff, at
//! `/admin` by default, over the application layer and the read models
//! the API dialects use. People sign in, not keys ([`session`]); every
//! change made here is the same command the API runs, recorded with the
//! staff member as its actor and `panel` as its origin.
//!
//! Pages work with JavaScript off; htmx (vendored, embedded) only adds
//! live updates. Every answer carries a Content-Security-Policy without
//! inline script, `X-Frame-Options: DENY` and `Cache-Control: no-store`
//! ([`layout::secure`]).

/// Forms whose token is their `csrf` field: see [`session::Change`].
macro_rules! form_token {
    ($($form:ty),+) => {
        $(impl crate::session::FormToken for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}

mod account;
mod anomalies;
mod assets;
mod bulk;
mod charts;
mod customers;
mod keys;
mod layout;
mod leads;
mod licenses;
mod overview;
mod product;
mod products;
mod resources;
mod search;
mod session;
mod sign_in;
mod staff;
mod tenants;
mod webhooks;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::Duration;
use keyledger_http::state::AppState;

pub use session::COOKIE;

/// Where and how the panel is served.
#[derive(Debug, Clone)]
pub struct PanelConfig {
    /// The path it is served under, such as `/admin`.
    pub base: String,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub lifetime: Duration,
    /// Cookies only over HTTPS (set when keyledger serves TLS or sits
    /// behind a proxy that does).
    pub secure_cookies: bool,
}

impl PanelConfig {
    /// A path under the panel's base.
    pub fn path(&self, tail: &str) -> String {
        format!("{}{tail}", self.base)
    }

    /// Whether a request path is the panel's.
    pub fn owns(&self, path: &str) -> bool {
        path == self.base || path.strip_prefix(&self.base).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The panel's routes, to be merged into the server's router outside the
/// API's JSON-only request screen (forms are not JSON).
pub fn router(state: AppState, config: PanelConfig) -> Router {
    let config = Arc::new(config);
    let pages = Router::new()
        .route("/", get(overview::page_handler))
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/account", get(account::show))
        .route("/account/totp", post(account::begin))
        .route("/account/totp/confirm", post(account::confirm))
        .route("/account/totp/disable", post(account::disable))
        .route("/operator/sign-in", get(sign_in::operator_form).post(sign_in::operator_submit))
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/audit", get(tenants::audit))
        .route("/audit/checkpoints", post(tenants::sign_checkpoint))
        .route("/audit/checkpoints/{position}", get(tenants::download_checkpoint))
        .route("/tenants/{id}", get(tenants::show))
        .route("/tenants/{id}/open", post(tenants::open))
        .route("/tenants/{id}/staff", post(tenants::invite))
        .route("/tenants/{id}/staff/{staff}/remove", post(tenants::remove_staff))
        .route("/invitation/{token}", get(sign_in::invitation_form).post(sign_in::accept_invitation))
        .route("/licenses", get(licenses::list).post(products::issue_license))
        .route("/licenses/bulk", post(bulk::run))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(product::show))
        .route("/products/{id}/{what}", post(product::change))
        .route("/resources", get(resources::list).post(resources::create))
        .route("/resources/{id}/retire", post(resources::retire))
        .route("/licenses/{id}/resources/{action}", post(resources::for_license))
        .route("/search", get(search::results))
        .route("/customers", get(customers::list))
        .route("/customers/{id}", get(customers::show))
        .route("/anomalies", get(anomalies::list))
        .route("/staff", get(staff::list).post(staff::invite))
        .route("/staff/{id}/remove", post(staff::remove))
        .route("/keys", get(keys::list))
        .route("/keys/api", post(keys::issue))
        .route("/keys/system", post(keys::issue_system))
        .route("/keys/api/{id}/revoke", post(keys::revoke))
        .route("/keys/signing/rotate", post(keys::rotate))
        .route("/keys/signing/{kid}/retire", post(keys::retire))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::show))
        .route("/webhooks/{id}/{action}", post(webhooks::act))
        .route("/webhooks/{id}/deliveries/{delivery}/redeliver", post(webhooks::redeliver))
        .route("/anomalies/{id}/resolve", post(anomalies::resolve))
        .route("/licenses/{id}", get(licenses::show))
        .route("/licenses/{id}/devices", get(licenses::devices_fragment))
        .route("/licenses/{id}/{action}", post(licenses::act))
        .route("/licenses/{id}/devices/{device}/{action}", post(licenses::device_act))
        .route("/leads", get(leads::list))
        .route("/leads/", get(leads::list))
        .route("/leads/create", get(leads::create_form).post(leads::create))
        .route("/leads/edit/{id}", get(leads::edit_form))
        .route("/leads/update/{id}", post(leads::update))
        .route("/leads/delete/{id}", post(leads::delete))
        .route("/leads/export", get(leads::export))
        .route(
            "/leads/import",
            get(leads::import_form)
                .post(leads::import)
                .layer(axum::extract::DefaultBodyLimit::max(leads::MAX_IMPORT_BYTES)),
        )
        .route("/assets/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(layout::secure))
        .layer(Extension(config.clone()))
        .with_state(state);
    Router::new().nest(&config.base, pages)
}

/// An answer to a panel request as HTML: errors raised before the pages
/// (the rate limits' 429, a block) come as the API's JSON, which a person
/// in a browser should not have to read.
pub fn html_errors(config: &PanelConfig, mut response: axum::response::Response) -> axum::response::Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.starts_with("application/json"));
    if !is_json || response.status().is_success() {
        layout::secure_headers(&mut response);
        return response;
    }
    let status = response.status();
    let message = match status {
        axum::http::StatusCode::TOO_MANY_REQUESTS => {
            let wait = response
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("a few");
            format!("Too many attempts from this address. Try again in {wait} seconds.")
        }
        axum::http::StatusCode::NOT_FOUND => "There is no such page.".to_owned(),
        axum::http::StatusCode::METHOD_NOT_ALLOWED => "This page does not take that kind of request.".to_owned(),
        _ => "The request could not be served.".to_owned(),
    };
    let mut answer = layout::problem(config, status, &message);
    for name in [axum::http::header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    layout::secure_headers(&mut answer);
    answer
}
