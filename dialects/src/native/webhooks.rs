//! A tenant's webhook endpoints (its admins'): created, listed, changed,
//! deleted, their secrets rotated, their delivery log read, a delivery
//! sent again, a test event sent.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use keyledger_app::webhooks::{self, fields, DeliveryFilter, EndpointPatch, NewEndpoint, PayloadFormat};
use serde::Deserialize;
use serde_json::{json, Value};

use keyledger_http::auth::Caller;
use keyledger_http::error::{ApiError, ApiResult};
use keyledger_http::extract::{JsonBody, PathParam, PathParams};
use keyledger_http::state::AppState;
use keyledger_http::Routes;
use utoipa_axum::routes;

/// How long the old secret keeps signing after a rotation.
const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

pub fn routes() -> Routes {
    Routes::new()
        .add(routes!(create_webhook, list_webhooks))
        .add(routes!(show_webhook, edit_webhook, delete_webhook))
        .add(routes!(rotate_webhook_secret))
        .add(routes!(list_webhook_deliveries))
        .add(routes!(redeliver_webhook_delivery))
        .add(routes!(send_webhook_test))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    /// https URL to POST events to.
    url: Option<String>,
    /// Event names (`license.activated`), prefixes (`license.*`) or `*`.
    events: Option<Vec<String>>,
    description: Option<String>,
    /// Default true.
    enabled: Option<bool>,
    /// `keyledger` (the default) or `v2-server`: the V2 License Server
    /// document's payload.
    #[serde(rename = "payloadFormat")]
    payload_format: Option<String>,
}

fn checked_format(raw: Option<&str>) -> ApiResult<Option<PayloadFormat>> {
    raw.map(|raw| {
        PayloadFormat::parse(raw)
            .ok_or_else(|| ApiError::field("payloadFormat", "payloadFormat must be \"keyledger\" or \"v2-server\""))
    })
    .transpose()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EditRequest {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// true re-enables an endpoint disabled for failing or for 410, and
    /// its queued deliveries go out.
    enabled: Option<bool>,
    #[serde(rename = "payloadFormat")]
    payload_format: Option<String>,
}

fn parse_id(raw: &str, field: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| ApiError::field(field, format!("{field} must be a UUID as listed")))
}

async fn checked_url(state: &AppState, raw: &str) -> ApiResult<String> {
    fields::checked_url(raw, state.webhooks.allow_private).await.map_err(field_error)
}

fn checked_events(events: Vec<String>) -> ApiResult<Vec<String>> {
    fields::checked_events(events).map_err(field_error)
}

fn checked_description(description: String) -> ApiResult<String> {
    fields::checked_description(description).map_err(field_error)
}

fn field_error(error: fields::FieldError) -> ApiError {
    ApiError::field(&error.field, error.message)
}

/// The endpoint `raw_id` of the caller's tenant; another tenant's is a 404.
async fn owned(state: &AppState, tenant_id: &str, raw_id: &str) -> ApiResult<webhooks::Endpoint> {
    let id = parse_id(raw_id, "id")?;
    state.webhooks.get(tenant_id, &id).await.map_err(ApiError::internal)?.ok_or_else(no_such_webhook)
}

fn no_such_webhook() -> ApiError {
    ApiError::not_found("No such webhook")
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    summary = "Create a webhook endpoint; the answer holds its signing secret, once (tenant admin)",
    request_body = CreateRequest,
    responses((status = 201, description = "Created, with its secret", body = crate::native::schemas::WebhookCreated), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = caller.require_admin()?;
    let url = request.url.ok_or_else(|| ApiError::field("url", "url is required"))?;
    let events = request.events.ok_or_else(|| ApiError::field("events", "events is required, e.g. [\"*\"]"))?;
    let new = NewEndpoint {
        events: checked_events(events)?,
        description: checked_description(request.description.unwrap_or_default())?,
        enabled: request.enabled.unwrap_or(true),
        url: checked_url(&state, &url).await?,
        payload_format: checked_format(request.payload_format.as_deref())?.unwrap_or_default(),
    };
    let max = state.webhooks.max_endpoints;
    let (endpoint, secret) =
        state.webhooks.create(tenant_id, new, max).await.map_err(ApiError::internal)?.ok_or_else(|| {
            ApiError::bad_request(
                "webhook_endpoint_limit",
                format!(
                    "The tenant has {max} webhook endpoints, the most it may have (KEYLEDGER_WEBHOOK_MAX_ENDPOINTS)"
                ),
            )
            .with_status(StatusCode::CONFLICT)
        })?;
    tracing::info!(tenant_id, webhook = %endpoint.id, "webhook endpoint created");
    let mut body = json!(endpoint);
    body["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    summary = "The tenant's webhook endpoints (tenant admin)",
    responses((status = 200, description = "Endpoints, oldest first", body = crate::native::schemas::WebhookList), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_webhooks(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let endpoints = state.webhooks.list(tenant_id).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "webhooks": endpoints })))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    summary = "One webhook endpoint (tenant admin)",
    params(("id" = String, Path, description = "The webhook id")),
    responses((status = 200, description = "The endpoint", body = crate::native::schemas::WebhookEndpoint), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn show_webhook(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    Ok(Json(json!(owned(&state, tenant_id, &raw_id).await?)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    summary = "Change a webhook endpoint; enabled: true resumes its deliveries (tenant admin)",
    params(("id" = String, Path, description = "The webhook id")), request_body = EditRequest,
    responses((status = 200, description = "The endpoint now", body = crate::native::schemas::WebhookEndpoint), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn edit_webhook(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    JsonBody(request): JsonBody<EditRequest>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let endpoint = owned(&state, tenant_id, &raw_id).await?;
    let patch = EndpointPatch {
        url: match request.url {
            Some(url) => Some(checked_url(&state, &url).await?),
            None => None,
        },
        events: request.events.map(checked_events).transpose()?,
        description: request.description.map(checked_description).transpose()?,
        enabled: request.enabled,
        payload_format: checked_format(request.payload_format.as_deref())?,
    };
    let updated = state
        .webhooks
        .update(tenant_id, &endpoint.id, patch)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(no_such_webhook)?;
    Ok(Json(json!(updated)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    summary = "Delete a webhook endpoint with its queued deliveries and their log (tenant admin)",
    params(("id" = String, Path, description = "The webhook id")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<StatusCode> {
    let tenant_id = caller.require_admin()?;
    let id = parse_id(&raw_id, "id")?;
    if state.webhooks.delete(tenant_id, &id).await.map_err(ApiError::internal)? {
        tracing::info!(tenant_id, webhook = %id, "webhook endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_webhook())
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    summary = "A new signing secret; the old one also signs for 24 hours (tenant admin)",
    params(("id" = String, Path, description = "The webhook id")),
    responses((status = 200, description = "The new secret, shown once", body = crate::native::schemas::WebhookSecret), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn rotate_webhook_secret(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let id = parse_id(&raw_id, "id")?;
    let secret = state
        .webhooks
        .rotate_secret(tenant_id, &id, ROTATION_OVERLAP)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(no_such_webhook)?;
    tracing::info!(tenant_id, webhook = %id, "webhook secret rotated");
    let until = chrono::Utc::now() + chrono::Duration::from_std(ROTATION_OVERLAP).unwrap_or_default();
    Ok(Json(json!({ "id": id, "secret": secret, "previousSecretSignsUntil": keyledger_http::instant(until) })))
}

#[derive(Debug, Default, Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
    event: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    summary = "The endpoint's deliveries, newest first, each with its attempts (tenant admin)",
    params(
        ("id" = String, Path, description = "The webhook id"),
        ("status" = Option<String>, Query, description = "pending, succeeded or failed"),
        ("event" = Option<String>, Query, description = "An event name, e.g. license.activated"),
        ("after" = Option<String>, Query, description = "Delivery id to continue after"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
    ),
    responses((status = 200, description = "A page of deliveries", body = crate::native::schemas::DeliveryPage), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn list_webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
    query: Result<axum::extract::Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let tenant_id = caller.require_admin()?;
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let endpoint = owned(&state, tenant_id, &raw_id).await?;
    if let Some(status) = &query.status {
        if !["pending", "succeeded", "failed"].contains(&status.as_str()) {
            return Err(ApiError::field("status", "status must be pending, succeeded or failed"));
        }
    }
    if let Some(event) = &query.event {
        if !webhooks::names::NAMES.contains(&event.as_str()) {
            return Err(ApiError::field("event", format!("{event:?} is not an event name")));
        }
    }
    let limit = keyledger_http::extract::bounded_integer(query.limit.as_deref(), "limit", 50, (1, 200))?;
    let after = query.after.as_deref().map(|raw| parse_id(raw, "after")).transpose()?;
    let filter = DeliveryFilter { status: query.status, event: query.event, after, limit };
    let page = state.webhooks.deliveries(&endpoint.id, &filter).await.map_err(ApiError::internal)?;
    let next_after = (page.len() as i64 == limit).then(|| page.last().map(|d| d["id"].clone())).flatten();
    Ok(Json(json!({ "deliveries": page, "nextAfter": next_after })))
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    tag = "webhooks",
    summary = "Send a delivery again now, with the same webhook-id (tenant admin)",
    params(("id" = String, Path, description = "The webhook id"), ("delivery_id" = String, Path, description = "The delivery id")),
    responses((status = 202, description = "Queued", body = crate::native::schemas::DeliveryQueued), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn redeliver_webhook_delivery(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(raw_id, raw_delivery): PathParams,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = caller.require_admin()?;
    let endpoint = owned(&state, tenant_id, &raw_id).await?;
    let delivery_id = parse_id(&raw_delivery, "delivery_id")?;
    match state.webhooks.redeliver(&endpoint.id, &delivery_id).await.map_err(ApiError::internal)? {
        webhooks::Redelivery::Queued => {}
        webhooks::Redelivery::NotFound => return Err(ApiError::not_found("No such delivery of this webhook")),
        webhooks::Redelivery::InFlight => {
            return Err(ApiError::bad_request(
                "delivery_in_flight",
                "An attempt of this delivery is under way; ask again when it is done",
            )
            .with_status(StatusCode::CONFLICT))
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveryId": delivery_id, "status": "pending" }))))
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/test",
    tag = "webhooks",
    summary = "Send a webhook.test event to the endpoint now (tenant admin)",
    params(("id" = String, Path, description = "The webhook id")),
    responses((status = 202, description = "Queued", body = crate::native::schemas::DeliveryQueued), (status = "default", description = "An error: a JSON body with a stable `code`", body = crate::native::schemas::Error)),
    security(("bearer" = []), ("apiKey" = []))
)]
async fn send_webhook_test(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(raw_id): PathParam,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant_id = caller.require_admin()?;
    let endpoint = owned(&state, tenant_id, &raw_id).await?;
    if !endpoint.enabled {
        return Err(ApiError::bad_request("webhook_disabled", "This webhook is disabled; enable it first")
            .with_status(StatusCode::CONFLICT));
    }
    let delivery_id = state
        .webhooks
        .send_test(tenant_id, &endpoint.id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("a fresh test event was already queued"))?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveryId": delivery_id, "status": "pending" }))))
}
