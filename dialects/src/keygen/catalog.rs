//! The vendor's catalog as Keygen shows it: products, and policies.
//!
//! A keyledger product holds exactly one policy (heartbeat, resurrection,
//! user cap), where Keygen's product holds many. So each product is shown
//! as one Keygen policy whose id is the product's id; creating a policy
//! for a product sets that product's policy, once (409 after), and a
//! license created with a policy is a license of its product.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use keyledger_app::aggregates::CatalogError;
use keyledger_app::products::{create_product as create_product_in, NewProduct, ProductCommandError, StoredProduct};
use keyledger_domain::{
    parse_code, parse_product_name, Policy, Product, ProductCommand, ProductError, Resurrection, MAX_HEARTBEAT_SECS,
    MIN_HEARTBEAT_SECS,
};
use serde_json::{json, Value};
use utoipa_axum::routes;

use super::admin::admin;
use super::body::{page, Document, Resource};
use super::{account, answer, bad_field, document, Credential};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParam, PathParams, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::{instant, Routes};

/// The route templates of the catalog: all admin-only.
pub(super) const ROUTES: [&str; 4] = [
    "/keygen/{account}/v1/products",
    "/keygen/{account}/v1/products/{id}",
    "/keygen/{account}/v1/policies",
    "/keygen/{account}/v1/policies/{id}",
];

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(routes!(list_products, create_product))
        .add(routes!(show_product))
        .add(routes!(list_policies, create_policy))
        .add(routes!(show_policy))
}

/// Most products a list reads; a tenant's catalog is small.
const MAX_LISTED: i64 = 1000;

/// Keygen's heartbeat duration when a policy requires heartbeats and
/// names none: ten minutes.
const DEFAULT_HEARTBEAT_SECS: u32 = 600;

fn link(tenant_id: &str, path: &str) -> String {
    format!("{}{tenant_id}/v1/{path}", super::PREFIX)
}

fn product_resource(product: &Product) -> Value {
    let tenant = product.tenant_id.as_str();
    let id = product.id.as_str();
    json!({
        "id": id,
        "type": "products",
        "attributes": {
            "name": product.name,
            "code": product.code,
            "distributionStrategy": "LICENSED",
            "url": null,
            "platforms": [],
            "permissions": [],
            "metadata": {},
            "created": product.created_at.map(instant),
            "updated": product.updated_at.or(product.created_at).map(instant),
        },
        "relationships": {
            "account": { "data": { "type": "accounts", "id": tenant } },
            "policies": { "links": { "related": link(tenant, &format!("products/{id}/policies")) } },
        },
        "links": { "self": link(tenant, &format!("products/{id}")) },
    })
}

/// The product's one policy, as a Keygen policy with the product's id.
fn policy_resource(product: &Product) -> Value {
    let tenant = product.tenant_id.as_str();
    let id = product.id.as_str();
    let policy = &product.policy;
    json!({
        "id": id,
        "type": "policies",
        "attributes": {
            "name": product.name,
            "duration": null,
            "strict": true,
            "floating": true,
            "scheme": null,
            "requireProductScope": false,
            "requireFingerprintScope": false,
            "maxMachines": null,
            "maxUsers": policy.max_users,
            "requireHeartbeat": policy.heartbeat_secs.is_some(),
            "heartbeatDuration": policy.heartbeat_secs,
            "heartbeatCullStrategy": "DEACTIVATE_DEAD",
            "heartbeatResurrectionStrategy": match policy.resurrection {
                Resurrection::None => "NO_REVIVE",
                Resurrection::Revive => "ALWAYS_REVIVE",
            },
            "heartbeatBasis": "FROM_CREATION",
            "expirationStrategy": "RESTRICT_ACCESS",
            "renewalBasis": "FROM_EXPIRY",
            "metadata": {},
            "created": product.created_at.map(instant),
            "updated": product.updated_at.or(product.created_at).map(instant),
        },
        "relationships": {
            "account": { "data": { "type": "accounts", "id": tenant } },
            "product": { "data": { "type": "products", "id": id } },
        },
        "links": { "self": link(tenant, &format!("policies/{id}")) },
    })
}

/// The account's live product with this id, or a 404 that tells nothing
/// of other accounts' ids.
pub(super) async fn tenant_product(state: &AppState, tenant_id: &str, raw_id: &str) -> Result<StoredProduct, ApiError> {
    let not_found = || ApiError::not_found("The product does not exist").with_code("NOT_FOUND");
    let id = uuid::Uuid::parse_str(raw_id.trim()).map_err(|_| not_found())?.to_string();
    match state.products.get(&id).await {
        Ok(Some(stored)) if stored.record.tenant_id.as_str() == tenant_id && !stored.record.deleted => Ok(stored),
        Ok(_) => Err(not_found()),
        Err(error) => Err(catalog_error(error)),
    }
}

/// A product store's refusal in Keygen's words.
fn catalog_error(error: ProductCommandError) -> ApiError {
    match error {
        CatalogError::Taken => bad_field("/data/attributes/code", "Another product of the account has this code")
            .with_code("CODE_TAKEN")
            .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        CatalogError::Refused(ProductError::NotFound) => {
            ApiError::not_found("The product does not exist").with_code("NOT_FOUND")
        }
        other => ApiError::from(other),
    }
}

/// The account's live products, oldest first, one page of them.
async fn products_page(
    state: &AppState,
    tenant_id: &str,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<(Vec<StoredProduct>, usize), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("PARAMETER_INVALID", e.body_text()))?;
    let (size, number) = page(&query)?;
    let products = state.products.list(tenant_id, None, MAX_LISTED, "TRUE", "").await.map_err(catalog_error)?;
    let count = products.len();
    Ok((products.into_iter().skip((number - 1).saturating_mul(size)).take(size).collect(), count))
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/products",
    tag = "keygen",
    operation_id = "keygen_products",
    summary = "The account's products, oldest first (admin token; `page[size]` 1 to 100, `page[number]`)",
    params(("account" = String, Path, description = "The tenant's id")),
    responses((status = 200, description = "{data: [product], meta: {count}}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn list_products(
    State(state): State<AppState>,
    PathParam(raw_account): PathParam,
    credential: Result<Credential, ApiError>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    listed(&state, &raw_account, credential, query, product_resource).await
}

/// A page of the account's products, each shown by `render`.
async fn listed(
    state: &AppState,
    raw_account: &str,
    credential: Result<Credential, ApiError>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    render: fn(&Product) -> Value,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(state, raw_account).await?;
            admin(credential, &tenant_id)?;
            let (products, count) = products_page(state, &tenant_id, query).await?;
            let data: Vec<Value> = products.iter().map(|stored| render(&stored.record)).collect();
            Ok(document(StatusCode::OK, json!({ "data": data, "meta": { "count": count } })))
        }
        .await,
    )
}

/// One of the account's products, shown by `render`.
async fn shown(
    state: &AppState,
    raw_account: &str,
    product_id: &str,
    credential: Result<Credential, ApiError>,
    render: fn(&Product) -> Value,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(state, raw_account).await?;
            admin(credential, &tenant_id)?;
            let stored = tenant_product(state, &tenant_id, product_id).await?;
            Ok(document(StatusCode::OK, json!({ "data": render(&stored.record) })))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/products/{id}",
    tag = "keygen",
    operation_id = "keygen_product",
    summary = "A product (admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The product's id")),
    responses((status = 200, description = "{data: product}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn show_product(
    State(state): State<AppState>,
    PathParams(raw_account, product_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    shown(&state, &raw_account, &product_id, credential, product_resource).await
}

/// A product's code: the one given, or one made of its name (lower case,
/// runs of anything but letters and digits as one `-`).
fn product_code(given: Option<&str>, name: &str) -> Result<String, ApiError> {
    let pointer = "/data/attributes/code";
    match given {
        Some(code) => parse_code(code).map_err(|e| bad_field(pointer, format!("code {e}"))),
        None => {
            let mut code = String::new();
            for c in name.chars() {
                if c.is_ascii_alphanumeric() {
                    code.push(c.to_ascii_lowercase());
                } else if !code.is_empty() && !code.ends_with('-') {
                    code.push('-');
                }
            }
            let code: String = code.trim_end_matches('-').chars().take(64).collect();
            parse_code(&code).map_err(|_| bad_field(pointer, "code is required when the name has no letters or digits"))
        }
    }
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/products",
    tag = "keygen",
    operation_id = "keygen_create_product",
    summary = "Create a product (`attributes.name`, optional `attributes.code`; 201; admin token)",
    params(("account" = String, Path, description = "The tenant's id")),
    request_body = Document,
    responses((status = 201, description = "{data: product}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn create_product(
    State(state): State<AppState>,
    context: RequestContext,
    PathParam(raw_account): PathParam,
    credential: Result<Credential, ApiError>,
    body: Result<JsonBody<Document>, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let caller = admin(credential, &tenant_id)?;
            let JsonBody(body) = body?;
            let resource = Resource::read(body, "products", &["name", "code"], &[])?;
            let name = resource.text("name")?.ok_or_else(|| bad_field("/data/attributes/name", "name is required"))?;
            let name = parse_product_name(name).map_err(|e| bad_field("/data/attributes/name", format!("name {e}")))?;
            let code = product_code(resource.text("code")?, &name)?;
            let now = Utc::now();
            let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
            let new = NewProduct {
                tenant_id: tenant_id.clone(),
                name,
                code,
                features: Vec::new(),
                key_format: Default::default(),
                policy: Policy::default(),
            };
            let stored = create_product_in(&state.products, new, &metadata, now).await.map_err(catalog_error)?;
            Ok(document(StatusCode::CREATED, json!({ "data": product_resource(&stored.record) })))
        }
        .await,
    )
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/policies",
    tag = "keygen",
    operation_id = "keygen_policies",
    summary = "The account's policies: one per product, with the product's id (admin token; `page[size]`, `page[number]`)",
    params(("account" = String, Path, description = "The tenant's id")),
    responses((status = 200, description = "{data: [policy], meta: {count}}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn list_policies(
    State(state): State<AppState>,
    PathParam(raw_account): PathParam,
    credential: Result<Credential, ApiError>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    listed(&state, &raw_account, credential, query, policy_resource).await
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/policies/{id}",
    tag = "keygen",
    operation_id = "keygen_policy",
    summary = "A policy: its product's (admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The policy's id: its product's")),
    responses((status = 200, description = "{data: policy}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn show_policy(
    State(state): State<AppState>,
    PathParams(raw_account, policy_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    shown(&state, &raw_account, &policy_id, credential, policy_resource).await
}

/// The policy a create asks for, from Keygen's attributes.
fn requested_policy(resource: &Resource) -> Result<Policy, ApiError> {
    let mut policy = Policy::default();
    let required = resource.boolean("requireHeartbeat")?;
    let duration =
        resource.integer("heartbeatDuration", i64::from(MIN_HEARTBEAT_SECS), i64::from(MAX_HEARTBEAT_SECS))?;
    policy.heartbeat_secs = match (required, duration) {
        (Some(false), Some(_)) => {
            return Err(bad_field(
                "/data/attributes/heartbeatDuration",
                "a heartbeatDuration makes heartbeats required: drop it or set requireHeartbeat",
            ))
        }
        (_, Some(secs)) => Some(secs as u32),
        (Some(true), None) => Some(DEFAULT_HEARTBEAT_SECS),
        (_, None) => None,
    };
    policy.resurrection = match resource.text("heartbeatResurrectionStrategy")? {
        None | Some("NO_REVIVE") => Resurrection::None,
        Some("ALWAYS_REVIVE") => Resurrection::Revive,
        Some(_) => {
            return Err(bad_field(
                "/data/attributes/heartbeatResurrectionStrategy",
                "heartbeatResurrectionStrategy must be NO_REVIVE or ALWAYS_REVIVE",
            ))
        }
    };
    if let Some(strategy) = resource.text("heartbeatCullStrategy")? {
        if strategy != "DEACTIVATE_DEAD" {
            return Err(bad_field(
                "/data/attributes/heartbeatCullStrategy",
                "heartbeatCullStrategy must be DEACTIVATE_DEAD: a dead machine gives its seat up",
            ));
        }
    }
    policy.max_users = resource.integer("maxUsers", 1, i64::from(u32::MAX))?.map(|users| users as u32);
    Ok(policy)
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/policies",
    tag = "keygen",
    operation_id = "keygen_create_policy",
    summary = "Set a product's policy (`relationships.product`; `requireHeartbeat`, `heartbeatDuration`, `heartbeatResurrectionStrategy`, `heartbeatCullStrategy`, `maxUsers`; `name` is the product's; 201, 409 once set; admin token)",
    params(("account" = String, Path, description = "The tenant's id")),
    request_body = Document,
    responses((status = 201, description = "{data: policy}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn create_policy(
    State(state): State<AppState>,
    context: RequestContext,
    PathParam(raw_account): PathParam,
    credential: Result<Credential, ApiError>,
    body: Result<JsonBody<Document>, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let caller = admin(credential, &tenant_id)?;
            let JsonBody(body) = body?;
            let resource = Resource::read(
                body,
                "policies",
                &[
                    "name",
                    "requireHeartbeat",
                    "heartbeatDuration",
                    "heartbeatResurrectionStrategy",
                    "heartbeatCullStrategy",
                    "maxUsers",
                ],
                &["product"],
            )?;
            // Keygen requires a name; keyledger's policy is named after its
            // product, so the name is checked as text and not kept.
            resource.text("name")?;
            let policy = requested_policy(&resource)?;
            let product_id = resource
                .related("product", "products")?
                .ok_or_else(|| bad_field("/data/relationships/product", "product is required"))?;
            let stored = tenant_product(&state, &tenant_id, product_id)
                .await
                .map_err(|error| error.with_field("/data/relationships/product/data/id"))?;
            if !stored.record.policy.is_default() {
                return Err(ApiError::bad_request(
                    "POLICY_TAKEN",
                    "The product's policy is set already: a keyledger product holds one policy",
                )
                .with_status(StatusCode::CONFLICT)
                .with_field("/data/relationships/product"));
            }
            let now = Utc::now();
            let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
            let build = || ProductCommand::UpdateProduct {
                name: None,
                code: None,
                features: None,
                key_format: None,
                policy: Some(policy.clone()),
                at: now,
            };
            let stored = state.products.execute(&stored.record.id, build, &metadata).await.map_err(catalog_error)?;
            Ok(document(StatusCode::CREATED, json!({ "data": policy_resource(&stored.record) })))
        }
        .await,
    )
}
