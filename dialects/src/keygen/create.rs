//! The vendor's backend creates and renews licenses: a license of the
//! policy's product (see [`super::catalog`]), generated as every dialect
//! generates one ([`keyledger_app::generation`]); a renewal moves the
//! expiry on by the license's term.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use keyledger_app::generation::{self, NewLicense};
use keyledger_app::serials::SerialKind;
use keyledger_domain::{LicenseCommand, Seats};
use utoipa_axum::routes;

use super::admin::{admin, license_answer, license_answer_with, run};
use super::body::{Document, Resource};
use super::catalog::tenant_product;
use super::{account, answer, bad_field, license_by_id, Credential};
use keyledger_http::error::ApiError;
use keyledger_http::extract::{JsonBody, PathParam, PathParams, RequestContext};
use keyledger_http::metadata::event_metadata;
use keyledger_http::state::AppState;
use keyledger_http::Routes;

pub(super) const ROUTES: [&str; 1] = ["/keygen/{account}/v1/licenses/{id}/actions/renew"];

/// `POST /licenses` is routed with the list, in [`super::admin`].
pub(super) fn routes() -> Routes {
    Routes::new().add(routes!(renew))
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses",
    tag = "keygen",
    operation_id = "keygen_create_license",
    summary = "Create a license of a policy's product (`relationships.policy`; `attributes.expiry`, `maxMachines`, `maxUsers`; the key is generated; 201; admin token)",
    params(("account" = String, Path, description = "The tenant's id")),
    request_body = Document,
    responses((status = 201, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
pub(super) async fn create(
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
            let resource = Resource::read(body, "licenses", &["expiry", "maxMachines", "maxUsers"], &["policy"])?;
            let expires_at = resource.instant("expiry")?;
            if expires_at.is_some_and(|at| at <= Utc::now()) {
                return Err(bad_field("/data/attributes/expiry", "expiry must be in the future"));
            }
            let seats = resource.integer("maxMachines", 1, i64::from(Seats::MAX))?.unwrap_or(1);
            let max_users = resource.integer("maxUsers", 1, i64::from(u32::MAX))?.map(|users| users as u32);
            let policy_id = resource
                .related("policy", "policies")?
                .ok_or_else(|| bad_field("/data/relationships/policy", "policy is required"))?;
            let field = "/data/relationships/policy/data/id";
            // Refused before a serial number is spent on it.
            tenant_product(&state, &tenant_id, policy_id).await.map_err(|error| error.with_field(field))?;
            let (_, owner_id) = caller.tenant()?;
            let number = state.serials.next(&tenant_id, SerialKind::License).await.map_err(ApiError::internal)?;
            let mut new =
                NewLicense::new(uuid::Uuid::new_v4().to_string(), &tenant_id, owner_id).expiring_at(expires_at);
            new.max_activations =
                Seats::new(seats).map_err(|e| bad_field("/data/attributes/maxMachines", e.to_string()))?;
            new.number = Some(number);
            let state = &state;
            let tenant = tenant_id.as_str();
            let license = generation::generate(
                &state.licenses,
                &new,
                move || async move {
                    let product =
                        tenant_product(state, tenant, policy_id).await.map_err(|error| error.with_field(field))?;
                    Ok(Some(product))
                },
                |base| {
                    let mut policy = base.clone();
                    if max_users.is_some() {
                        policy.max_users = max_users;
                    }
                    Ok::<_, ApiError>(policy)
                },
                |at| event_metadata(&context, Some(&caller), tenant, at),
            )
            .await?;
            license_answer_with(state, &license, StatusCode::CREATED).await
        }
        .await,
    )
}

#[utoipa::path(
    post,
    path = "/keygen/{account}/v1/licenses/{id}/actions/renew",
    tag = "keygen",
    operation_id = "keygen_renew_license",
    summary = "Renew a license: its expiry moves on by its term (expiry less creation), from its expiry (admin token)",
    params(("account" = String, Path, description = "The tenant's id"), ("id" = String, Path, description = "The license's id")),
    responses((status = 200, description = "{data: license}", body = Object, content_type = "application/vnd.api+json"), (status = "default", description = "{errors: [{title, detail, code, source}]}", body = Object, content_type = "application/vnd.api+json")),
    security(("bearer" = []))
)]
async fn renew(
    State(state): State<AppState>,
    context: RequestContext,
    PathParams(raw_account, license_id): PathParams,
    credential: Result<Credential, ApiError>,
) -> Response {
    answer(
        async {
            let (tenant_id, _) = account(&state, &raw_account).await?;
            let caller = admin(credential, &tenant_id)?;
            let license = license_by_id(&state, &tenant_id, &Credential::Admin(caller.clone()), &license_id).await?;
            let Some(renewed) = license.renewed_expiry() else {
                return Err(ApiError::bad_request("NOT_RENEWABLE", "The license has no expiry to renew")
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY));
            };
            let command = LicenseCommand::EditLicense {
                expires_at: Some(renewed),
                max_activations: None,
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::body::{Document, Resource};

    fn read(data: Value) -> Result<Resource, String> {
        Resource::read(Document { data: Some(data) }, "licenses", &["expiry", "maxMachines"], &["policy"])
            .map_err(|error| format!("{}", error.field.unwrap_or_default()))
    }

    #[test]
    fn a_request_names_what_it_may_not_carry() {
        assert_eq!(read(json!({ "type": "machines" })).err().as_deref(), Some("/data/type"));
        assert_eq!(
            read(json!({ "type": "licenses", "attributes": { "name": "x" } })).err().as_deref(),
            Some("/data/attributes/name")
        );
        assert_eq!(
            read(json!({ "type": "licenses", "relationships": { "user": {} } })).err().as_deref(),
            Some("/data/relationships/user")
        );
        let resource = read(json!({
            "type": "license",
            "attributes": { "maxMachines": "3" },
            "relationships": { "policy": { "data": { "type": "policies", "id": "p" } } },
        }))
        .unwrap();
        assert_eq!(resource.related("policy", "policies").unwrap(), Some("p"));
        assert_eq!(
            resource.integer("maxMachines", 1, 10).unwrap_err().field.as_deref(),
            Some("/data/attributes/maxMachines")
        );
    }
}
