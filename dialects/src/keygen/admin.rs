//! The vendor's backend (an admin token): list licenses, change one's
//! expiry or seats, suspend, reinstate, and revoke or delete it (Keygen's
//! revoke deletes). Each is the one license command every dialect uses.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keyledger_domain::{LicenseCommand, Seats};
use serde_json::json;
use utoipa_axum::routes;

use super::{account, admin_of, answer, bad_field, document, license_by_id, resources, Credential};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParam, PathParams, RequestContext};
use keyledger_http::state::AppState;
use keyledger_http::Routes;

/// The route templates only an admin token calls: management calls, not
/// client ones. (`/licenses/{id}` is also a license key's own read.)
pub(super) const ROUTES: [&str; 4] = [
    "/keygen/{account}/v1/licenses",
    "/keygen/{account}/v1/licenses/{id}/actions/suspend",
    "/keygen/{account}/v1/licenses/{id}/actions/reinstate",
    "/keygen/{account}/v1/licenses/{id}/actions/revoke",
];

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(routes!(list, super::create::create))
        .add(routes!(update, delete))
        .add(routes!(suspend))
        .add(routes!(reinstate))
        .add(routes!(revoke))
}

/// The admin caller of the account, or why not.
pub(super) fn admin(
    credential: Result<Credential, ApiError>,
    tenant_id: &str,
) -> Result<keyledger_http::auth::Caller, ApiError> {
    match credential? {
        Credential::Admin(caller) => admin_of(&caller, tenant_id).cloned(),
        Credential::License(_) => Err(ApiError::forbidden("This needs an admin token").with_code("FORBIDDEN")),
        Credential::None => Err(ApiError::unauthorized("This needs an admin token").with_code("TOKEN_INVALID")),
    }
}

/// Runs one license command as the admin and answers the license.
pub(super) async fn run(
    state: &AppState,
    context: &RequestContext,
    caller: &keyledger_http::auth::Caller,
    license: &keyledger_domain::License,
    command: LicenseCommand,
) -> Result<keyledger_domain::License, ApiError> {
    let metadata = keyledger_http::metadata::event_metadata(context, Some(caller), &license.tenant_id, Utc::now());
    Ok(state.licenses.execute(&license.id, command, metadata).await?)
}

pub(super) async fn license_answer(
    state: &AppState,
    license: &keyledger_domain::License,
) -> Result<Response, ApiError> {
    license_answer_with(state, license, StatusCode::OK).await
}

/// The license as the answer's `data`, with this status.
pub(super) async fn license_answer_with(
    state: &AppState,
    license: &keyledger_domain::License,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let product = state.client.product_of(license).await?;
    let features = keyledger_app::client::features(license, product.as_deref());
    Ok(document(status, json!({ "data": resources::license(license, &features, Utc::now()) })))
}

#[utoipa::path(
    get,
    path = "/keygen/{account}/v1/licenses",
    tag = "keygen",
    operation_id = "keygen_licenses",
    summary = "The account's licenses, newest first (admin token; `limit` or `page[size]` 1 to 100, `page[number]`)",
    params(("account" = String, Path, description = "The tenant's id")),
    responses((status = 200, description = "{data: [license], meta: {count}}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    PathParam(raw_account): PathParam,
    credential: Result<Credential, ApiError>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            admin(credential, &tenant_id)?;
            let Query(query) = query.map_err(|e| ApiError::bad_request("PARAMETER_INVALID", e.body_text()))?;
            let (size, page) = super::body::page(&query)?;
            let mut licenses = state.client.tenant_licenses_where(&tenant_id, |license| !license.deleted).await;
            licenses.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
            let count = licenses.len();
            let now = Utc::now();
            let mut data = Vec::new();
            for license in licenses.iter().skip((page - 1).saturating_mul(size)).take(size) {
                let product = state.client.product_of(license).await?;
                data.push(resources::license(
                    license,
                    &keyledger_app::client::features(license, product.as_deref()),
                    now,
                ));
            }
            Ok(document(StatusCode::OK, json!({ "data": data, "meta": { "count": count } })))
        }
        .await,
    )
}

#[utoipa::path(
    patch,
    path = "/keygen/{account}/v1/licenses/{id}",
    tag = "keygen",
    operation_id = "keygen_update_license",
    summary = "Change a license's expiry or seats (`attributes.expiry`, `attributes.maxMachines`; admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    request_body = super::body::Document,
    responses((status = 200, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
    body: Result<JsonBody<super::body::Document>, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let caller = admin(credential, &tenant_id)?;
            let JsonBody(body) = body?;
            let resource = super::body::Resource::read(body, "licenses", &["expiry", "maxMachines"], &[])?;
            let expires_at = resource.instant("expiry")?;
            let max_activations = resource
                .integer("maxMachines", 1, i64::from(Seats::MAX))?
                .map(|seats| Seats::new(seats).map_err(|e| bad_field("/data/attributes/maxMachines", e.to_string())))
                .transpose()?;
            let license = license_by_id(&state, &tenant_id, &Credential::Admin(caller.clone()), &license_id).await?;
            let command = LicenseCommand::EditLicense {
                expires_at,
                max_activations,
                max_connections: None,
                policy: None,
                customer_id: None,
                at: Utc::now(),
            };
            let license = run(&state, &context, &caller, &license, command).await?;
            license_answer(&state, &license).await
        }
        .await,
    )
}

/// A license action of the admin: the command it runs, and whether the
/// answer is the license (else 204).
async fn act(
    state: &AppState,
    context: &RequestContext,
    raw_account: &str,
    license_id: &str,
    credential: Result<Credential, ApiError>,
    command: LicenseCommand,
) -> Result<keyledger_domain::License, ApiError> {
    let (tenant_id, _) = account(state, raw_account).await?;
    let caller = admin(credential, &tenant_id)?;
    let license = license_by_id(state, &tenant_id, &Credential::Admin(caller.clone()), license_id).await?;
    run(state, context, &caller, &license, command).await
}

/// Delete and Keygen's revoke: `LicenseDeleted`, then 204.
async fn deletion(
    state: &AppState,
    context: &RequestContext,
    raw_account: &str,
    license_id: &str,
    credential: Result<Credential, ApiError>,
) -> Response {
    let command = LicenseCommand::DeleteLicense { at: Utc::now() };
    let deleted = act(state, context, raw_account, license_id, credential, command).await;
    answer(deleted.map(|_| StatusCode::NO_CONTENT.into_response()))
}

/// Suspend and reinstate: the command, then the license as it is now.
async fn status_change(
    state: &AppState,
    context: &RequestContext,
    raw_account: &str,
    license_id: &str,
    credential: Result<Credential, ApiError>,
    command: LicenseCommand,
) -> Response {
    let result = act(state, context, raw_account, license_id, credential, command).await;
    answer(match result {
        Ok(license) => license_answer(state, &license).await,
        Err(error) => Err(error),
    })
}

#[utoipa::path(
    delete,
    path = "/keygen/{account}/v1/licenses/{id}",
    tag = "keygen",
    operation_id = "keygen_delete_license",
    summary = "Delete a license (LicenseDeleted: gone everywhere, its history kept; 204; admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    deletion(&state, &context, &raw_account, &license_id, credential).await
}

#[utoipa::path(
    delete,
    path = "/keygen/{account}/v1/licenses/{id}/actions/revoke",
    tag = "keygen",
    operation_id = "keygen_revoke_license",
    summary = "Revoke a license: as Keygen, it is deleted (204; admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 204, description = "Revoked"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    deletion(&state, &context, &raw_account, &license_id, credential).await
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses/{id}/actions/suspend",
    tag = "keygen",
    operation_id = "keygen_suspend_license",
    summary = "Suspend a license (admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn suspend(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    let command = LicenseCommand::SuspendLicense { reason: None, at: Utc::now() };
    status_change(&state, &context, &raw_account, &license_id, credential, command).await
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses/{id}/actions/reinstate",
    tag = "keygen",
    operation_id = "keygen_reinstate_license",
    summary = "Reinstate a suspended license (admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn reinstate(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    let command = LicenseCommand::ReinstateLicense { at: Utc::now() };
    status_change(&state, &context, &raw_account, &license_id, credential, command).await
}
