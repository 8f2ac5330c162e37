//! The HTTP surface: which path goes to which handler.

mod audit;
mod health;
mod licenses;
mod tenants;

use axum::http::{Method, Uri};
use axum::middleware;
use axum::Router;

use crate::error::ApiError;
use crate::extract::request_context;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(tenants::routes())
        .merge(audit::platform_routes())
        // One set of handlers under the native path and seed 000's own.
        .nest("/api/v1/licenses", license_routes())
        .nest("/api/v1/fastrLicense", license_routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

fn license_routes() -> Router<AppState> {
    licenses::routes().merge(audit::routes())
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path())).with_code("route_not_found")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("{method} is not allowed on {}", uri.path()))
        .with_code("method_not_allowed")
        .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}
