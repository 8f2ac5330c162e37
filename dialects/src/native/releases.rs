//! A product's releases (seed 003's version API): published by tenant
//! admins as events of the product; validate and heartbeat answer
//! clients that report their `appVersion` whether an update is out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use keyledger_domain::{
    parse_code, parse_download_url, parse_release_notes, parse_version, ProductCommand, Release, STABLE,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::audit::{query_params, QueryParams};
use super::products::tenant_product;
use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::instant;
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub fn routes() -> Routes {
    Routes::new().add(routes!(publish_release, list_releases))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    /// A semantic version (`2.4.0`), once per channel.
    pub version: Option<String>,
    /// RFC 3339, or a plain date (midnight UTC); now when left out. A
    /// release dated later is not offered to clients until then.
    #[serde(default, deserialize_with = "keyledger_http::dates::optional")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub release_date: Option<DateTime<Utc>>,
    pub download_url: Option<String>,
    pub release_notes: Option<String>,
    /// Clients older than it must update. False by default.
    pub mandatory: Option<bool>,
    /// `stable` by default; update checks read `stable`.
    pub channel: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResponse {
    pub version: String,
    pub channel: String,
    pub release_date: String,
    pub download_url: Option<String>,
    pub release_notes: Option<String>,
    pub mandatory: bool,
}

impl ReleaseResponse {
    fn new(release: &Release) -> Self {
        Self {
            version: release.version.clone(),
            channel: release.channel.clone(),
            release_date: instant(release.release_date),
            download_url: release.download_url.clone(),
            release_notes: release.release_notes.clone(),
            mandatory: release.mandatory,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/products/{product_id}/releases",
    tag = "products",
    summary = "Publish a release of a product (tenant admin)",
    params(("product_id" = String, Path, description = "The product id (a UUID)")), request_body = ReleaseRequest,
    responses((status = 201, description = "The release", body = ReleaseResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn publish_release(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> ApiResult<(StatusCode, Json<ReleaseResponse>)> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = tenant_product(&state, &tenant_id, &raw_id).await?;
    let raw_version = request.version.as_deref().ok_or_else(|| ApiError::field("version", "version is required"))?;
    let version = parse_version(raw_version).map_err(|e| ApiError::field("version", format!("version {e}")))?;
    let download_url = request
        .download_url
        .as_deref()
        .map(parse_download_url)
        .transpose()
        .map_err(|e| ApiError::field("downloadUrl", format!("downloadUrl {e}")))?;
    let release_notes = request
        .release_notes
        .as_deref()
        .map(parse_release_notes)
        .transpose()
        .map_err(|e| ApiError::field("releaseNotes", format!("releaseNotes {e}")))?;
    let channel = request
        .channel
        .as_deref()
        .map(parse_code)
        .transpose()
        .map_err(|e| ApiError::field("channel", format!("channel {e}")))?
        .unwrap_or_else(|| STABLE.to_owned());
    let now = Utc::now();
    let release = Release {
        version,
        channel,
        release_date: request.release_date.unwrap_or(now),
        download_url,
        release_notes,
        mandatory: request.mandatory.unwrap_or(false),
    };
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    let build = || ProductCommand::PublishRelease { release: release.clone(), at: now };
    state.products.execute(&stored.record.id, build, &metadata).await?;
    Ok((StatusCode::CREATED, Json(ReleaseResponse::new(&release))))
}

#[utoipa::path(
    get,
    path = "/api/v1/products/{product_id}/releases",
    tag = "products",
    summary = "A product's releases, newest version first (tenant admin)",
    params(("product_id" = String, Path, description = "The product id (a UUID)"), ("channel" = Option<String>, Query, description = "Only this channel's")),
    responses((status = 200, description = "The releases", body = crate::native::schemas::Releases), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_releases(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    let stored = tenant_product(&state, &tenant_id, &raw_id).await?;
    let mut releases: Vec<&Release> = stored
        .record
        .releases
        .iter()
        .filter(|release| params.get("channel").is_none_or(|channel| &release.channel == channel))
        .collect();
    releases.sort_by(|a, b| {
        let version = |r: &Release| semver::Version::parse(&r.version).ok();
        version(b).cmp(&version(a))
    });
    let releases: Vec<ReleaseResponse> = releases.into_iter().map(ReleaseResponse::new).collect();
    Ok(Json(json!({ "productId": stored.record.id, "releases": releases })))
}
