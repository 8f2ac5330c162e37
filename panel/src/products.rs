//! Products: the tenant's catalog, a form to add a product, and a form to
//! issue a license of one (generated as every dialect generates one,
//! [`keyledger_app::generation`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use keyledger_app::aggregates::CatalogError;
use keyledger_app::generation::{self, NewLicense};
use keyledger_app::products::{create_product, NewProduct, StoredProduct};
use keyledger_app::serials::SerialKind;
use keyledger_domain::{parse_code, parse_features, parse_product_name, KeyFormat, Policy, Seats};
use keyledger_http::extract::RequestContext;
use keyledger_http::instant;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{html_response, page, problem};
use crate::session::{panel_context, Change, Signed};

/// Products listed at most (a tenant's catalog is small).
const MAX_LISTED: i64 = 1000;

async fn products(state: &AppState, signed: &Signed) -> Result<Vec<StoredProduct>, Response> {
    state.products.list(&signed.session.tenant_id, None, MAX_LISTED, "TRUE", "").await.map_err(|error| {
        tracing::error!(error = %error, "panel: listing products failed");
        problem(&signed.config, StatusCode::SERVICE_UNAVAILABLE, "The products can't be read just now.")
    })
}

/// The page, with what a refused form said and the values it held.
fn products_page(signed: &Signed, products: &[StoredProduct], error: Option<&str>, held: &ProductForm) -> Markup {
    let config = &signed.config;
    let content = html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        @if products.is_empty() {
            p { "No product yet." }
        } @else {
            div.scroll {
                table {
                    caption.visually-hidden { "Products" }
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Code" }
                            th scope="col" { "Features" }
                            th scope="col" { "Heartbeat" }
                            th scope="col" { "Releases" }
                            th scope="col" { "Created" }
                        }
                    }
                    tbody {
                        @for stored in products {
                            @let product = &stored.record;
                            tr {
                                td { a href=(config.path(&format!("/products/{}", product.id))) { (product.name) } }
                                td { code { (product.code) } }
                                td { (product.features.join(", ")) }
                                td { (product.policy.heartbeat_secs.map(|secs| format!("every {secs} s")).unwrap_or_else(|| "not required".to_owned())) }
                                td { (product.releases.len()) }
                                td { (product.created_at.map(instant).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
        @if signed.can_change() {
            section aria-labelledby="new-product" {
                h2 #new-product { "New product" }
                form.filters method="post" action=(config.path("/products")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="name" { "Name" } input #name type="text" name="name" value=(held.name) required; }
                    div { label for="code" { "Code" } input #code type="text" name="code" value=(held.code) required; }
                    div { label for="features" { "Features (comma-separated)" } input #features type="text" name="features" value=(held.features); }
                    div { label for="heartbeat" { "Heartbeat every (s, blank: none)" } input #heartbeat type="number" min="2" name="heartbeat" value=(held.heartbeat); }
                    button type="submit" { "Create product" }
                }
            }
            @if !products.is_empty() {
                section aria-labelledby="new-license" {
                    h2 #new-license { "New license" }
                    form.filters method="post" action=(config.path("/licenses")) {
                        input type="hidden" name="csrf" value=(signed.session.csrf);
                        div {
                            label for="product" { "Product" }
                            select #product name="product" {
                                @for stored in products {
                                    option value=(stored.record.id.as_str()) { (stored.record.name) }
                                }
                            }
                        }
                        div { label for="seats" { "Seats" } input #seats type="number" min="1" name="seats" value="1" required; }
                        div { label for="expires" { "Expires on (blank: never)" } input #expires type="date" name="expires"; }
                        button type="submit" { "Issue license" }
                    }
                }
            }
        }
    };
    page(signed, "Products", "products", content)
}

pub async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    match products(&state, &signed).await {
        Ok(products) => html_response(StatusCode::OK, products_page(&signed, &products, None, &ProductForm::default())),
        Err(response) => response,
    }
}

#[derive(Deserialize, Default)]
pub struct ProductForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    features: String,
    #[serde(default)]
    heartbeat: String,
}

form_token!(ProductForm);

/// The product a form asks for, or what is wrong with it.
fn checked_product(tenant_id: &str, form: &ProductForm) -> Result<NewProduct, String> {
    let name = parse_product_name(&form.name).map_err(|e| format!("Name: the name {e}."))?;
    let code = parse_code(form.code.trim()).map_err(|e| format!("Code: the code {e}."))?;
    let features: Vec<String> =
        form.features.split(',').map(str::trim).filter(|feature| !feature.is_empty()).map(str::to_owned).collect();
    let features = parse_features(&features).map_err(|(at, e)| format!("Features: feature {} {e}.", at + 1))?;
    let mut policy = Policy::default();
    if !form.heartbeat.trim().is_empty() {
        let secs = form
            .heartbeat
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|secs| (keyledger_domain::MIN_HEARTBEAT_SECS..=keyledger_domain::MAX_HEARTBEAT_SECS).contains(secs))
            .ok_or("Heartbeat: a number of seconds from 2 to a year, or blank.")?;
        policy.heartbeat_secs = Some(secs);
    }
    Ok(NewProduct { tenant_id: tenant_id.to_owned(), name, code, features, key_format: KeyFormat::default(), policy })
}

pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    Change { signed, form }: Change<ProductForm>,
) -> Response {
    let refuse = |status: StatusCode, message: &str, products: Vec<StoredProduct>| {
        html_response(status, products_page(&signed, &products, Some(message), &form))
    };
    let new = match checked_product(&signed.session.tenant_id, &form) {
        Ok(new) => new,
        Err(message) => {
            return match products(&state, &signed).await {
                Ok(products) => refuse(StatusCode::BAD_REQUEST, &message, products),
                Err(response) => response,
            }
        }
    };
    let now = Utc::now();
    let metadata = event_metadata(&panel_context(&context), Some(&signed.caller()), &signed.session.tenant_id, now);
    match create_product(&state.products, new, &metadata, now).await {
        Ok(_) => Redirect::to(&signed.config.path("/products")).into_response(),
        Err(CatalogError::Taken) => match products(&state, &signed).await {
            Ok(products) => refuse(StatusCode::CONFLICT, "Code: another product has this code.", products),
            Err(response) => response,
        },
        Err(error) => {
            tracing::error!(error = %error, "panel: creating a product failed");
            problem(&signed.config, StatusCode::SERVICE_UNAVAILABLE, "The product could not be created just now.")
        }
    }
}

#[derive(Deserialize, Default)]
pub struct LicenseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    seats: String,
    #[serde(default)]
    expires: String,
}

form_token!(LicenseForm);

pub async fn issue_license(
    State(state): State<AppState>,
    context: RequestContext,
    Change { signed, form }: Change<LicenseForm>,
) -> Response {
    let config = &signed.config;
    let bad = |message: &str| problem(config, StatusCode::BAD_REQUEST, message);
    let Some(seats) = form.seats.trim().parse::<i64>().ok().and_then(|n| Seats::new(n).ok()) else {
        return bad("Seats: a number from 1 to 100000.");
    };
    let expires_at = match form.expires.trim() {
        "" => None,
        raw => match NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|day| day.and_hms_opt(0, 0, 0)) {
            Some(at) if at.and_utc() > Utc::now() => Some(at.and_utc()),
            _ => return bad("Expires on: a date in the future, such as 2027-01-31."),
        },
    };
    let tenant_id = signed.session.tenant_id.as_str();
    let product_id = form.product.trim();
    let read_product = || async {
        match state.products.get(product_id).await {
            Ok(Some(stored)) if stored.record.tenant_id.as_str() == tenant_id && !stored.record.deleted => {
                Ok(Some(stored))
            }
            Ok(_) => Err(Failure::Page(bad("Product: there is no such product."))),
            Err(error) => {
                tracing::error!(error = %error, "panel: reading a product failed");
                Err(Failure::Page(problem(
                    config,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The product can't be read just now.",
                )))
            }
        }
    };
    let number = match state.serials.next(tenant_id, SerialKind::License).await {
        Ok(number) => number,
        Err(error) => {
            tracing::error!(error = %error, "panel: numbering a license failed");
            return problem(config, StatusCode::SERVICE_UNAVAILABLE, "The license could not be issued just now.");
        }
    };
    let caller = signed.caller();
    let mut new =
        NewLicense::new(uuid::Uuid::new_v4().to_string(), tenant_id, &signed.session.staff_id).expiring_at(expires_at);
    new.max_activations = seats;
    new.number = Some(number);
    let context = panel_context(&context);
    let generated = generation::generate(
        &state.licenses,
        &new,
        read_product,
        |base| Ok::<_, Failure>(base.clone()),
        |at| event_metadata(&context, Some(&caller), tenant_id, at),
    )
    .await;
    match generated {
        Ok(license) => Redirect::to(&config.path(&format!("/licenses/{}", license.id))).into_response(),
        Err(Failure::Page(response)) => response,
        Err(Failure::Command(keyledger_app::CommandError::GuardMoved)) => {
            problem(config, StatusCode::CONFLICT, "The product changed meanwhile: try again.")
        }
        Err(Failure::Command(error)) => {
            tracing::error!(error = %error, "panel: issuing a license failed");
            problem(config, StatusCode::SERVICE_UNAVAILABLE, "The license could not be issued just now.")
        }
    }
}

/// Why a license was not issued: a page already made, or the command's
/// failure.
enum Failure {
    Page(Response),
    Command(keyledger_app::CommandError),
}

impl From<keyledger_app::CommandError> for Failure {
    fn from(error: keyledger_app::CommandError) -> Self {
        Self::Command(error)
    }
}
