//! One product: its features, its policy (the one policy its licenses
//! follow: heartbeat, what a dead device may do, transfers, overage,
//! users), and its releases, with forms to change the first two and to
//! publish a release. Each change is the product command the API runs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use keyledger_app::aggregates::CatalogError;
use keyledger_app::products::StoredProduct;
use keyledger_domain::{
    parse_code, parse_download_url, parse_features, parse_release_notes, parse_version, Overage, Policy,
    ProductCommand, Release, Resurrection, TransferLimit, MAX_HEARTBEAT_SECS, MAX_TRANSFERS, MIN_HEARTBEAT_SECS,
    STABLE,
};
use keyledger_http::extract::RequestContext;
use keyledger_http::instant;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use maud::html;
use serde::Deserialize;

use crate::layout::{html_response, page, problem, unavailable};
use crate::session::{panel_context, Change, Signed};

/// The tenant's live product with this id, or a 404 page.
async fn tenant_product(state: &AppState, signed: &Signed, raw_id: &str) -> Result<StoredProduct, Response> {
    let not_found = || problem(&signed.config, StatusCode::NOT_FOUND, "There is no such product.");
    let id = uuid::Uuid::parse_str(raw_id.trim()).map_err(|_| not_found())?.to_string();
    match state.products.get(&id).await {
        Ok(Some(stored))
            if stored.record.tenant_id.as_str() == signed.session.tenant_id.as_str() && !stored.record.deleted =>
        {
            Ok(stored)
        }
        Ok(_) => Err(not_found()),
        Err(error) => Err(unavailable(&signed.config, "Reading the product", &error)),
    }
}

fn optional_number(value: Option<u32>) -> String {
    value.map(|n| n.to_string()).unwrap_or_default()
}

pub async fn show(State(state): State<AppState>, signed: Signed, Path(raw_id): Path<String>) -> Response {
    let config = &signed.config;
    let stored = match tenant_product(&state, &signed, &raw_id).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let product = &stored.record;
    let policy = &product.policy;
    let base = config.path(&format!("/products/{}", product.id));
    let mut releases: Vec<&Release> = product.releases.iter().collect();
    releases.sort_by(|a, b| b.release_date.cmp(&a.release_date));
    let overage_option = |value: Overage, label: &str| {
        html! { option value=(value.as_str()) selected[policy.overage == value] { (label) } }
    };
    let content = html! {
        dl.facts {
            div { dt { "Code" } dd { code { (product.code) } } }
            div { dt { "Id" } dd { code { (product.id.as_str()) } } }
            div { dt { "Features" } dd #product-features { @if product.features.is_empty() { "none" } @else { (product.features.join(", ")) } } }
            div { dt { "Heartbeat" } dd #product-heartbeat { (policy.heartbeat_secs.map(|secs| format!("every {secs} s")).unwrap_or_else(|| "not required".to_owned())) } }
        }
        @if signed.can_change() {
            section aria-labelledby="features-title" {
                h2 #features-title { "Features" }
                form.filters method="post" action=(format!("{base}/features")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="features" { "Features (comma-separated)" } input #features type="text" name="features" value=(product.features.join(", ")); }
                    button type="submit" { "Save features" }
                }
            }
            section aria-labelledby="policy-title" {
                h2 #policy-title { "Policy" }
                p { "Every license of this product follows it." }
                form.filters #policy method="post" action=(format!("{base}/policy")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="heartbeat" { "Heartbeat every (s, blank: none)" } input #heartbeat type="number" min=(MIN_HEARTBEAT_SECS) max=(MAX_HEARTBEAT_SECS) name="heartbeat" value=(optional_number(policy.heartbeat_secs)); }
                    div {
                        label for="resurrection" { "A dead device" }
                        select #resurrection name="resurrection" {
                            option value="none" selected[policy.resurrection == Resurrection::None] { "activates again" }
                            option value="revive" selected[policy.resurrection == Resurrection::Revive] { "is revived by its next call" }
                        }
                    }
                    div { label for="transfers" { "Transfers allowed (blank: any)" } input #transfers type="number" min="0" max=(MAX_TRANSFERS) name="transfers" value=(optional_number(policy.transfer_limit.map(|limit| limit.count))); }
                    div { label for="transfer-days" { "… in days" } input #transfer-days type="number" min="1" max="366" name="transfer_days" value=(optional_number(policy.transfer_limit.map(|limit| limit.period_secs / 86_400))); }
                    div {
                        label for="overage" { "Devices beyond the seats" }
                        select #overage name="overage" {
                            (overage_option(Overage::None, "none"))
                            (overage_option(Overage::Quarter, "25% more"))
                            (overage_option(Overage::Half, "50% more"))
                            (overage_option(Overage::Double, "twice the seats"))
                        }
                    }
                    div { label for="max-users" { "Users (blank: no cap)" } input #max-users type="number" min="1" name="max_users" value=(optional_number(policy.max_users)); }
                    button type="submit" { "Save policy" }
                }
            }
        }
        section aria-labelledby="releases-title" {
            h2 #releases-title { "Releases" }
            @if releases.is_empty() {
                p { "No release yet." }
            } @else {
                div.scroll {
                    table #releases {
                        thead { tr { th scope="col" { "Version" } th scope="col" { "Channel" } th scope="col" { "Date" } th scope="col" { "Mandatory" } th scope="col" { "Download" } } }
                        tbody {
                            @for release in &releases {
                                tr {
                                    td { code { (release.version) } }
                                    td { (release.channel) }
                                    td { (instant(release.release_date)) }
                                    td { @if release.mandatory { "yes" } @else { "no" } }
                                    td { (release.download_url.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            @if signed.can_change() {
                form.filters #publish method="post" action=(format!("{base}/releases")) {
                    input type="hidden" name="csrf" value=(signed.session.csrf);
                    div { label for="version" { "Version" } input #version type="text" name="version" placeholder="2.4.0" required; }
                    div { label for="channel" { "Channel" } input #channel type="text" name="channel" value=(STABLE); }
                    div { label for="release-date" { "Date (blank: now)" } input #release-date type="date" name="date"; }
                    div { label for="download" { "Download URL" } input #download type="url" name="download_url"; }
                    div { label for="notes" { "Notes" } input #notes type="text" name="notes"; }
                    div { label for="mandatory" { "Mandatory" } input #mandatory type="checkbox" name="mandatory" value="yes"; }
                    button type="submit" { "Publish" }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&signed, &format!("Product {}", product.name), "products", content))
}

#[derive(Deserialize, Default)]
pub struct ProductChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    features: String,
    #[serde(default)]
    heartbeat: String,
    #[serde(default)]
    resurrection: String,
    #[serde(default)]
    transfers: String,
    #[serde(default)]
    transfer_days: String,
    #[serde(default)]
    overage: String,
    #[serde(default)]
    max_users: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    download_url: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    mandatory: String,
}

form_token!(ProductChangeForm);

/// A number from a form field in `min..=max`, `None` when blank.
fn number(raw: &str, name: &str, min: u32, max: u32) -> Result<Option<u32>, String> {
    match raw.trim() {
        "" => Ok(None),
        raw => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| format!("{name}: a number from {min} to {max}, or blank.")),
    }
}

/// The policy a form asks for, or what is wrong with it.
fn checked_policy(form: &ProductChangeForm) -> Result<Policy, String> {
    let heartbeat_secs = number(&form.heartbeat, "Heartbeat", MIN_HEARTBEAT_SECS, MAX_HEARTBEAT_SECS)?;
    let resurrection = match form.resurrection.trim() {
        "" | "none" => Resurrection::None,
        "revive" => Resurrection::Revive,
        _ => return Err("A dead device: activates again, or is revived.".to_owned()),
    };
    let transfer_limit = match (
        number(&form.transfers, "Transfers allowed", 0, MAX_TRANSFERS)?,
        number(&form.transfer_days, "Days", 1, 366)?,
    ) {
        (None, None) => None,
        (Some(count), Some(days)) => Some(TransferLimit { count, period_secs: days * 86_400 }),
        _ => return Err("Transfers allowed: give both the number and the days, or neither.".to_owned()),
    };
    let overage = Overage::parse(form.overage.trim()).ok_or("Devices beyond the seats: one of the choices.")?;
    let max_users = number(&form.max_users, "Users", 1, u32::MAX)?;
    Ok(Policy { heartbeat_secs, resurrection, transfer_limit, overage, max_users })
}

/// The release a form asks for, or what is wrong with it.
fn optional(raw: &str) -> Option<&str> {
    Some(raw.trim()).filter(|raw| !raw.is_empty())
}

fn checked_release(form: &ProductChangeForm) -> Result<Release, String> {
    let version = parse_version(form.version.trim()).map_err(|e| format!("Version: the version {e}."))?;
    let channel = match form.channel.trim() {
        "" => STABLE.to_owned(),
        raw => parse_code(raw).map_err(|e| format!("Channel: the channel {e}."))?,
    };
    let release_date = match form.date.trim() {
        "" => Utc::now(),
        raw => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|at| at.and_utc())
            .ok_or("Date: a date such as 2027-01-31.")?,
    };
    let download_url = optional(&form.download_url)
        .map(parse_download_url)
        .transpose()
        .map_err(|e| format!("Download URL: the URL {e}."))?;
    let release_notes =
        optional(&form.notes).map(parse_release_notes).transpose().map_err(|e| format!("Notes: the notes {e}."))?;
    Ok(Release { version, channel, release_date, download_url, release_notes, mandatory: form.mandatory == "yes" })
}

/// Changes the features or the policy, or publishes a release.
pub async fn change(
    State(state): State<AppState>,
    context: RequestContext,
    Path((raw_id, what)): Path<(String, String)>,
    Change { signed, form }: Change<ProductChangeForm>,
) -> Response {
    let config = &signed.config;
    let stored = match tenant_product(&state, &signed, &raw_id).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let now = Utc::now();
    let update = |features: Option<Vec<String>>, policy: Option<Policy>| ProductCommand::UpdateProduct {
        name: None,
        code: None,
        features,
        key_format: None,
        policy,
        at: now,
    };
    let command = match what.as_str() {
        "features" => {
            let features: Vec<String> =
                form.features.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect();
            match parse_features(&features) {
                Ok(features) => update(Some(features), None),
                Err((at, e)) => {
                    return problem(config, StatusCode::BAD_REQUEST, &format!("Features: feature {} {e}.", at + 1))
                }
            }
        }
        "policy" => match checked_policy(&form) {
            Ok(policy) => update(None, Some(policy)),
            Err(message) => return problem(config, StatusCode::BAD_REQUEST, &message),
        },
        "releases" => match checked_release(&form) {
            Ok(release) => ProductCommand::PublishRelease { release, at: now },
            Err(message) => return problem(config, StatusCode::BAD_REQUEST, &message),
        },
        _ => return problem(config, StatusCode::NOT_FOUND, "There is no such change."),
    };
    let metadata = event_metadata(&panel_context(&context), Some(&signed.caller()), &signed.session.tenant_id, now);
    match state.products.execute(stored.record.id.as_str(), || command.clone(), &metadata).await {
        Ok(_) => Redirect::to(&config.path(&format!("/products/{}", stored.record.id))).into_response(),
        Err(CatalogError::Refused(refusal)) => problem(config, StatusCode::CONFLICT, &format!("{refusal}.")),
        Err(error) => unavailable(config, "Changing the product", &error),
    }
}
