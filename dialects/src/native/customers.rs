//! Customers of a tenant (tenant admins): who the vendor sells licenses
//! to, found by name or email. Each change is an event in the customer's
//! own chain; licenses name their customer with `customerId`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use keyledger_app::aggregates::NO_FILTER;
use keyledger_app::customers::{search_pattern, MAX_QUERY_LEN, SEARCH_FILTER};
use keyledger_app::serials::SerialKind;
use keyledger_domain::{
    check_metadata, parse_customer_name, parse_email, Customer, CustomerChanges, CustomerCommand, CustomerFieldError,
    CustomerFields,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit::{query_params, QueryParams};
use super::catalog::Kind;
use crate::native::wire::{instant, present, LicenseResponse};
use keyledger_http::auth::Caller;
use keyledger_http::catalog::customer_not_found;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(create_customer, list_customers))
        .add(routes!(get_customer, update_customer, delete_customer))
        .add(routes!(customer_licenses))
        .add(routes!(customer_history))
        .add(routes!(customer_state))
}

/// In an edit, a field left out keeps its value and `null` clears it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRequest {
    /// 1 to 200 characters. A customer needs a name or an email.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// An address like name@example.com, at most 254 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// 1 to 200 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub company: Option<Option<String>>,
    /// Free-form: at most 64 keys, 8 KiB as JSON. An edit replaces it whole.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerResponse {
    pub id: String,
    /// Its per-tenant serial number.
    pub number: Option<i64>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub company: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The sequence of its last event.
    pub version: i64,
}

impl CustomerResponse {
    fn new(customer: &Customer, version: i64) -> Self {
        let fields = &customer.fields;
        Self {
            id: customer.id.to_string(),
            number: customer.number,
            name: fields.name.clone(),
            email: fields.email.clone(),
            company: fields.company.clone(),
            metadata: fields.metadata.clone(),
            created_at: customer.created_at.map(instant),
            updated_at: customer.updated_at.map(instant),
            version,
        }
    }
}

const CUSTOMER: Kind = Kind { id_field: "customerId", not_found: customer_not_found };

/// The id of the tenant's live customer `raw_id`, for a license that
/// names it (generate, edit); another tenant's or a deleted one does not
/// exist.
pub(super) async fn tenant_customer_id(state: &AppState, tenant_id: &str, raw_id: &str) -> ApiResult<String> {
    Ok(CUSTOMER.tenant_record(&state.customers, tenant_id, raw_id, false).await?.record.id.to_string())
}

fn checked(field: &str, raw: &str, parse: fn(&str) -> Result<String, CustomerFieldError>) -> ApiResult<String> {
    parse(raw).map_err(|e| ApiError::field(field, format!("{field} {e}")))
}

/// The request's changes, each field checked; `None` where it left a
/// field out.
fn changes(request: &CustomerRequest) -> ApiResult<CustomerChanges> {
    let field = |name: &str, value: &Option<Option<String>>, parse| match value {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(raw)) => checked(name, raw, parse).map(|value| Some(Some(value))),
    };
    if let Some(metadata) = &request.metadata {
        check_metadata(metadata).map_err(|e| ApiError::field("metadata", format!("metadata {e}")))?;
    }
    Ok(CustomerChanges {
        name: field("name", &request.name, parse_customer_name)?,
        email: field("email", &request.email, parse_email)?,
        company: field("company", &request.company, parse_customer_name)?,
        metadata: request.metadata.clone(),
    })
}

/// A new customer with only a name (a lead that became one); its id.
pub(super) async fn create_named(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    tenant_id: &str,
    name: &str,
) -> ApiResult<String> {
    let fields = CustomerFields { name: Some(name.to_owned()), ..CustomerFields::default() };
    let number = state.serials.next(tenant_id, SerialKind::Customer).await.map_err(ApiError::internal)?;
    let customer_id = Uuid::new_v4().to_string();
    let now = Utc::now();
    let metadata = event_metadata(context, Some(caller), tenant_id, now);
    let build = || CustomerCommand::CreateCustomer {
        customer_id: keyledger_domain::CustomerId::trusted(customer_id.clone()),
        tenant_id: keyledger_domain::TenantId::trusted(tenant_id.to_owned()),
        number: Some(number),
        fields: fields.clone(),
        at: now,
    };
    state.customers.execute(&customer_id, build, &metadata).await?;
    Ok(customer_id)
}

#[utoipa::path(
    post,
    path = "/api/v1/customers",
    tag = "customers",
    summary = "Create a customer (tenant admin)",
    request_body = CustomerRequest,
    responses((status = 201, description = "The customer", body = CustomerResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_customer(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    JsonBody(request): JsonBody<CustomerRequest>,
) -> ApiResult<(StatusCode, Json<CustomerResponse>)> {
    let tenant_id = caller.require_admin()?.to_owned();
    let changes = changes(&request)?;
    let fields = CustomerFields {
        name: changes.name.flatten(),
        email: changes.email.flatten(),
        company: changes.company.flatten(),
        metadata: changes.metadata.unwrap_or_default(),
    };
    if fields.name.is_none() && fields.email.is_none() {
        return Err(ApiError::field("name", "name or email is required"));
    }
    let number = state.serials.next(&tenant_id, SerialKind::Customer).await.map_err(ApiError::internal)?;
    let customer_id = Uuid::new_v4().to_string();
    let now = Utc::now();
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    let build = || CustomerCommand::CreateCustomer {
        customer_id: keyledger_domain::CustomerId::trusted(customer_id.clone()),
        tenant_id: keyledger_domain::TenantId::trusted(tenant_id.clone()),
        number: Some(number),
        fields: fields.clone(),
        at: now,
    };
    let stored = state.customers.execute(&customer_id, build, &metadata).await?;
    Ok((StatusCode::CREATED, Json(CustomerResponse::new(&stored.record, stored.version))))
}

#[utoipa::path(
    get,
    path = "/api/v1/customers",
    tag = "customers",
    summary = "The tenant's customers, oldest first, found by name or email (tenant admin)",
    params(("q" = Option<String>, Query, description = "Only customers whose name or email holds this text, any case"), ("after" = Option<String>, Query, description = "Customer id to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of customers", body = crate::native::schemas::CustomerPage), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_customers(State(state): State<AppState>, caller: Caller, params: QueryParams) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    let (after, limit) = CUSTOMER.page_params(&params)?;
    let query = params.get("q").map(|q| q.trim()).filter(|q| !q.is_empty());
    if query.is_some_and(|q| q.chars().count() > MAX_QUERY_LEN) {
        return Err(ApiError::field("q", format!("q must be at most {MAX_QUERY_LEN} characters")));
    }
    let (filter, pattern) = match query {
        Some(q) => (SEARCH_FILTER, search_pattern(q)),
        None => (NO_FILTER, String::new()),
    };
    let page = state.customers.list(&tenant_id, after.as_deref(), limit, filter, &pattern).await?;
    let next_after = (page.len() as i64 == limit).then(|| page.last().map(|c| c.record.id.clone())).flatten();
    let customers: Vec<CustomerResponse> = page.iter().map(|c| CustomerResponse::new(&c.record, c.version)).collect();
    Ok(Json(json!({ "customers": customers, "nextAfter": next_after })))
}

#[utoipa::path(
    get,
    path = "/api/v1/customers/{customer_id}",
    tag = "customers",
    summary = "A customer (tenant admin)",
    params(("customer_id" = String, Path, description = "The customer id (a UUID)")),
    responses((status = 200, description = "The customer", body = CustomerResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<CustomerResponse>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = CUSTOMER.tenant_record(&state.customers, &tenant_id, &raw_id, false).await?;
    Ok(Json(CustomerResponse::new(&stored.record, stored.version)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/customers/{customer_id}",
    tag = "customers",
    summary = "Change a customer's name, email, company or metadata (tenant admin)",
    params(("customer_id" = String, Path, description = "The customer id (a UUID)")), request_body = CustomerRequest,
    responses((status = 200, description = "The customer now", body = CustomerResponse), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn update_customer(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<CustomerRequest>,
) -> ApiResult<Json<CustomerResponse>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = CUSTOMER.tenant_record(&state.customers, &tenant_id, &raw_id, false).await?;
    let changes = changes(&request)?;
    let now = Utc::now();
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    let build = || CustomerCommand::UpdateCustomer { changes: changes.clone(), at: now };
    let stored = state.customers.execute(&stored.record.id, build, &metadata).await?;
    Ok(Json(CustomerResponse::new(&stored.record, stored.version)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/customers/{customer_id}",
    tag = "customers",
    summary = "Delete a customer (tenant admin): its licenses keep working and keep its id; its history stays readable",
    params(("customer_id" = String, Path, description = "The customer id (a UUID)")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn delete_customer(
    State(state): State<AppState>,
    context: RequestContext,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<StatusCode> {
    let tenant_id = caller.require_admin()?.to_owned();
    let stored = CUSTOMER.tenant_record(&state.customers, &tenant_id, &raw_id, false).await?;
    let now = Utc::now();
    let metadata = event_metadata(&context, Some(&caller), &tenant_id, now);
    state.customers.execute(&stored.record.id, || CustomerCommand::DeleteCustomer { at: now }, &metadata).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/customers/{customer_id}/licenses",
    tag = "customers",
    summary = "A customer's licenses, oldest first (tenant admin)",
    params(("customer_id" = String, Path, description = "The customer id (a UUID)"), ("after" = Option<String>, Query, description = "License id to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of licenses", body = crate::native::schemas::CustomerLicenses), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn customer_licenses(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    let stored = CUSTOMER.tenant_record(&state.customers, &tenant_id, &raw_id, false).await?;
    let limit = super::audit::integer_param(&params, "limit", super::audit::DEFAULT_PAGE, (1, super::audit::MAX_PAGE))?;
    let after = params
        .get("after")
        .map(|raw| {
            super::licenses::parse_license_id(raw).map_err(|_| ApiError::field("after", "after must be a license id"))
        })
        .transpose()?;
    let views = state
        .views
        .by_customer(&tenant_id, &stored.record.id, after.as_deref(), limit)
        .await
        .map_err(ApiError::internal)?;
    let now = Utc::now();
    let next_after = (views.len() as i64 == limit).then(|| views.last().map(|v| v.license.id.clone())).flatten();
    let licenses: Vec<LicenseResponse> = views.iter().map(|v| LicenseResponse::new(&v.license, now)).collect();
    Ok(Json(json!({ "customerId": stored.record.id, "licenses": licenses, "nextAfter": next_after })))
}

#[utoipa::path(
    get,
    path = "/api/v1/customers/{customer_id}/events",
    tag = "customers",
    summary = "A customer's history, oldest first (tenant admin)",
    params(("customer_id" = String, Path, description = "The customer id (a UUID)"), ("after" = Option<i64>, Query, description = "Position to continue after"), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "A page of event envelopes", body = crate::native::schemas::CustomerHistory), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn customer_history(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    Ok(Json(CUSTOMER.history(&state.customers, &tenant_id, &raw_id, &params).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/customers/{customer_id}/state",
    tag = "customers",
    summary = "A customer as it was at an instant, replayed from its events (tenant admin)",
    params(("customer_id" = String, Path, description = "The customer id (a UUID)"), ("at" = String, Query, description = "An RFC 3339 instant")),
    responses((status = 200, description = "The customer then", body = crate::native::schemas::CustomerStateAt), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn customer_state(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?.to_owned();
    let params = query_params(params)?;
    let render = |customer: &Customer, version| json!(CustomerResponse::new(customer, version));
    Ok(Json(CUSTOMER.state_at(&state.customers, &tenant_id, &raw_id, &params, render).await?))
}
