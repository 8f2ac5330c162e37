//! The HTTP surface: which path goes to which handler, and the table of
//! every route, which tests walk so that none is missed.

mod audit;
mod client;
mod health;
mod keys;
mod licenses;
mod metrics;
mod tenants;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::error::ApiError;
use crate::extract::request_context;
use crate::limits::rate_limit;
use crate::screen::screen;
use crate::state::AppState;

/// The largest request body accepted; every body keyledger takes is a few
/// hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One route: a method and a path template such as `/api/v1/licenses/{license_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: String,
}

/// A router that remembers what it was given.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<Route>,
}

impl Routes {
    fn new() -> Self {
        Self { router: Router::new(), table: Vec::new() }
    }

    fn on<H: Handler<T, AppState>, T: 'static>(mut self, method: Method, path: &str, handler: H) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("every method used here has a filter");
        self.router = self.router.route(path, on(filter, handler));
        self.table.push(Route { method, path: path.to_owned() });
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::GET, path, handler)
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::POST, path, handler)
    }

    fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::PATCH, path, handler)
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::DELETE, path, handler)
    }

    fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// `other`'s routes under `prefix`; its `/` is the prefix itself.
    fn nest(mut self, prefix: &str, other: Routes) -> Self {
        self.router = self.router.nest(prefix, other.router);
        self.table.extend(other.table.into_iter().map(|route| Route {
            path: if route.path == "/" { prefix.to_owned() } else { format!("{prefix}{}", route.path) },
            method: route.method,
        }));
        self
    }
}

fn all() -> Routes {
    Routes::new()
        .merge(health::routes())
        .merge(tenants::routes())
        .merge(audit::platform_routes())
        .merge(keys::routes())
        .merge(metrics::routes())
        // One set of handlers under the native path and seed 000's own.
        .nest("/api/v1/licenses", license_routes())
        .nest("/api/v1/fastrLicense", license_routes())
}

fn license_routes() -> Routes {
    licenses::routes().merge(client::routes()).merge(audit::routes())
}

pub fn router(state: AppState) -> Router {
    all()
        .router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(screen))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

/// Every route the API serves.
pub fn table() -> Vec<Route> {
    all().table
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path())).with_code("route_not_found")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("{method} is not allowed on {}", uri.path()))
        .with_code("method_not_allowed")
        .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}
