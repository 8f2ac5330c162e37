//! Products of a tenant (tenant admins): what the vendor sells, with the
//! feature codes its licenses carry and the default policy they start
//! from. Each change is an event in the product's own chain.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use keyledger_app::aggregates::NO_FILTER;
use keyledger_app::products::StoredProduct;
use keyledger_app::products::{create_product as create_product_in, NewProduct};
use keyledger_domain::{parse_code, parse_features, parse_product_name, KeyFormat, Policy, Product, ProductCommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::audit::{query_params, QueryParams};
use super::catalog::Kind;
use crate::native::wire::{instant, PolicyFields, PolicyResponse};
use keyledger_http::auth::Caller;
use keyledger_http::catalog::product_not_found;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(create_product, list_products))
        .add(routes!(get_product, update_product, delete_product))
        .add(routes!(product_history))
        .add(routes!(product_state))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct ProductRequest {
    /// 1 to 200 characters.
    pub name: Option<String>,
    /// Unique among the tenant's live products: 1 to 64 of `A-Z a-z 0-9 _ - .`.
    pub code: Option<String>,
    /// Feature codes (entitlements) its licenses carry, at most 100.
    pub features: Option<Vec<String>>,
    /// The shape of its licenses' keys: `XXXX-XXXX-XXXX-XXXX` (the
    /// default) or `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX` (seed 001's clients).
    pub key_format: Option<String>,
    /// The policy its licenses start from; generate's `policy` fields
    /// change it per license.
    pub policy: Option<PolicyFields>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductResponse {
    pub id: String,
    pub name: String,
    pub code: String,
    pub features: Vec<String>,
    pub key_format: &'static str,
    pub policy: PolicyResponse,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The sequence of its last event.
    pub version: i64,
}

impl ProductResponse {
    fn new(product: &Product, version: i64) -> Self {
        Self {
            id: product.id.to_string(),
            name: product.name.clone(),
            code: product.code.clone(),
            features: product.features.clone(),
            key_format: product.key_format.as_str(),
            policy: PolicyResponse::new(&product.policy),
            created_at: product.created_at.map(instant),
            updated_at: product.updated_at.map(instant),
            version,
        }
    }
}

pub(crate) const PRODUCT: Kind = Kind { id_field: "productId", not_found: product_not_found };

/// The caller's tenant's live product `raw_id`; another tenant's or a
/// deleted one does not exist.
pub(super) async fn tenant_product(state: &AppState, tenant_id: &str, raw_id: &str) -> ApiResult<StoredProduct> {
    PRODUCT.tenant_record(&state.products, tenant_id, raw_id, false).await
}

fn checked_name(raw: &str) -> ApiResult<String> {
    parse_product_name(raw).map_err(|e| ApiError::field("name", format!("name {e}")))
}

fn checked_code(raw: &str) -> ApiResult<String> {
    parse_code(raw).map_err(|e| ApiError::field("code", format!("code {e}")))
}

fn checked_key_format(raw: &str) -> ApiResult<KeyFormat> {
    KeyFormat::parse(raw).ok_or_else(|| {
        ApiError::field("keyFormat", "keyFormat must be XXXX-XXXX-XXXX-XXXX or XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")
    })
}

pub(crate) fn checked_features(raw: &[String]) -> ApiResult<Vec<String>> {
    parse_features(raw).map_err(|(index, e)| ApiError::field(&format!("features[{index}]"), format!("a feature {e}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/products",
    tag = "products",
    summary = "Create a product (tenant admin)",
    request_body = ProductRequest,
    responses((status = 201, description = "The product", body = ProductResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_product(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    JsonBody(request): JsonBody<ProductRequest>,
) -> ApiResult<(StatusCode, Json<ProductResponse>)> {
    let tenant_id = caller.require_admin()?.to_owned();
    let name = checked_name(request.name.as_deref().ok_or_else(|| ApiError::field("name", "name is required"))?)?;
    let code = checked_code(request.code.as_deref().ok_or_else(|| ApiError::field("code", "code is required"))?)?;
    let features = checked_features(request.features.as_deref().unwrap_or_default())?;
    let key_format = request.key_format.as_deref().map(checked_key_format).transpose()?.unwrap_or_default();
    let policy = match &request.policy {
        Some(fields) => super::policy::apply(&Policy::default(), fields)?,
        None => Policy::default(),
    };
    let now = Utc::now();
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    let new = NewProduct { tenant_id: tenant_id.clone(), name, code, features, key_format, policy };
    let stored = create_product_in(&state.products, new, &metadata, now).await?;
    Ok((StatusCode::CREATED, Json(ProductResponse::new(&stored.record, stored.version))))
}

#[utoipa::path(
    get,
    path = "/api/v1/products",
    tag = "products",
    summary = "The tenant's products, oldest first (tenant admin)",
    params(("after" = Option<String>, Query, description = "Product id to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of products", body = crate::native::schemas::ProductPage), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_products(State(state): State<AppState>, caller: Caller, params: QueryParams) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    let (after, limit) = PRODUCT.page_params(&params)?;
    let page = state.products.list(&tenant_id, after.as_deref(), limit, NO_FILTER, "").await?;
    let next_after = (page.len() as i64 == limit).then(|| page.last().map(|p| p.record.id.clone())).flatten();
    let products: Vec<ProductResponse> = page.iter().map(|p| ProductResponse::new(&p.record, p.version)).collect();
    Ok(Json(json!({ "products": products, "nextAfter": next_after })))
}

#[utoipa::path(
    get,
    path = "/api/v1/products/{product_id}",
    tag = "products",
    summary = "A product (tenant admin)",
    params(("product_id" = String, Path, description = "The product id (a UUID)")),
    responses((status = 200, description = "The product", body = ProductResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn get_product(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<ProductResponse>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = tenant_product(&state, &tenant_id, &raw_id).await?;
    Ok(Json(ProductResponse::new(&stored.record, stored.version)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/products/{product_id}",
    tag = "products",
    summary = "Change a product's name, code, features or policy (tenant admin)",
    params(("product_id" = String, Path, description = "The product id (a UUID)")), request_body = ProductRequest,
    responses((status = 200, description = "The product now", body = ProductResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn update_product(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<ProductRequest>,
) -> ApiResult<Json<ProductResponse>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = tenant_product(&state, &tenant_id, &raw_id).await?;
    let name = request.name.as_deref().map(checked_name).transpose()?;
    let code = request.code.as_deref().map(checked_code).transpose()?;
    let features = request.features.as_deref().map(checked_features).transpose()?;
    let key_format = request.key_format.as_deref().map(checked_key_format).transpose()?;
    let policy =
        request.policy.as_ref().map(|fields| super::policy::apply(&stored.record.policy, fields)).transpose()?;
    let now = Utc::now();
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    let build = || ProductCommand::UpdateProduct {
        name: name.clone(),
        code: code.clone(),
        features: features.clone(),
        key_format,
        policy: policy.clone(),
        at: now,
    };
    let now = state.products.execute(&stored.record.id, build, &metadata).await?;
    Ok(Json(ProductResponse::new(&now.record, now.version)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/products/{product_id}",
    tag = "products",
    summary = "Delete a product (tenant admin): its licenses keep working; its code is free again",
    params(("product_id" = String, Path, description = "The product id (a UUID)")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn delete_product(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<StatusCode> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = tenant_product(&state, &tenant_id, &raw_id).await?;
    let now = Utc::now();
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    state.products.execute(&stored.record.id, || ProductCommand::DeleteProduct { at: now }, &metadata).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/products/{id}/events`: the product's history, shaped like
/// a license's.
#[utoipa::path(
    get,
    path = "/api/v1/products/{product_id}/events",
    tag = "products",
    summary = "A product's history, oldest first (tenant admin)",
    params(("product_id" = String, Path, description = "The product id (a UUID)"), ("after" = Option<i64>, Query, description = "Position to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of event envelopes", body = crate::native::schemas::ProductHistory), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn product_history(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    Ok(Json(PRODUCT.history(&state.products, &tenant_id, &raw_id, &params).await?))
}

/// `GET /api/v1/products/{id}/state?at=`: the product as it was then.
#[utoipa::path(
    get,
    path = "/api/v1/products/{product_id}/state",
    tag = "products",
    summary = "A product as it was at an instant, replayed from its events (tenant admin)",
    params(("product_id" = String, Path, description = "The product id (a UUID)"), ("at" = String, Query, description = "An RFC 3339 instant")),
    responses((status = 200, description = "The product then", body = crate::native::schemas::ProductStateAt), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn product_state(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    let render = |product: &Product, version| json!(ProductResponse::new(product, version));
    Ok(Json(PRODUCT.state_at(&state.products, &tenant_id, &raw_id, &params, render).await?))
}
