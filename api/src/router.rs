//! The HTTP surface: which path goes to which handler in every dialect,
//! the layers every request passes, and the table of every route, which
//! tests walk so that none is missed.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use utoipa::openapi::path::{Operation, PathItem, Paths};
use utoipa::openapi::{RefOr, Schema};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::dialects::render_errors;
use crate::error::ApiError;
use crate::extract::request_context;
use crate::limits::{rate_limit, LimitLayer};
use crate::screen::screen;
use keyledger_app::signing::Directory;
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

/// A router that remembers what it was given: each route comes with its
/// handler's OpenAPI operation (utoipa-axum's `routes!`), so the table of
/// routes and the document are built from the same registrations.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<Route>,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Self { router: Router::new(), table: Vec::new(), paths: Paths::new(), schemas: Vec::new() }
    }

    /// Adds the handlers of one `routes!(…)`, which share a path.
    pub(crate) fn add(mut self, (schemas, paths, method_router): UtoipaMethodRouter<AppState>) -> Self {
        for (path, item) in &paths.paths {
            self.router = self.router.route(path, method_router.clone());
            self.table.extend(methods(item).into_iter().map(|method| Route { method, path: path.clone() }));
        }
        self.paths.merge(paths);
        self.schemas.extend(schemas);
        self
    }

    pub(crate) fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self.paths.merge(other.paths);
        self.schemas.extend(other.schemas);
        self
    }

    /// `other`'s routes under `prefix`; its `/` is the prefix itself.
    /// Operation ids get `id_prefix`, so each copy of a route stays unique.
    pub(crate) fn nest(mut self, prefix: &str, other: Routes, id_prefix: &str) -> Self {
        let under = |path: &str| if path == "/" { prefix.to_owned() } else { format!("{prefix}{path}") };
        self.router = self.router.nest(prefix, other.router);
        self.table
            .extend(other.table.into_iter().map(|route| Route { path: under(&route.path), method: route.method }));
        let mut nested = Paths::new();
        for (path, mut item) in other.paths.paths {
            for operation in operations(&mut item) {
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id_prefix}{id}"));
            }
            nested.paths.insert(under(&path), item);
        }
        self.paths.merge(nested);
        self.schemas.extend(other.schemas);
        self
    }
}

fn methods(item: &PathItem) -> Vec<Method> {
    [
        (Method::GET, &item.get),
        (Method::POST, &item.post),
        (Method::PUT, &item.put),
        (Method::PATCH, &item.patch),
        (Method::DELETE, &item.delete),
    ]
    .into_iter()
    .filter(|(_, operation)| operation.is_some())
    .map(|(method, _)| method)
    .collect()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
}

fn all() -> Routes {
    crate::dialects::routes()
}

pub fn router(state: AppState) -> Router {
    all()
        .router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(FrontDoor::of(&state), front_door))
        .with_state(state)
}

/// What the front door's layers need: handles, cheap to clone per request
/// (the whole application state is not).
#[derive(Clone)]
struct FrontDoor {
    metrics: Arc<crate::metrics::Metrics>,
    directory: Arc<Directory>,
    limits: LimitLayer,
}

impl FrontDoor {
    fn of(state: &AppState) -> Self {
        Self {
            metrics: state.metrics.clone(),
            directory: state.directory.clone(),
            limits: LimitLayer { limits: state.limits.clone(), metrics: state.metrics.clone() },
        }
    }
}

/// The layers every request passes, outermost first: its request id and
/// metrics, error answers in the dialect's shape, the rate limits, the
/// request screen; then the route. One middleware rather than one each,
/// because axum clones a middleware's inner stack of services on every
/// request: four layers cost four nested clones, one costs one.
async fn front_door(State(door): State<FrontDoor>, request: Request, next: Next) -> Response {
    let FrontDoor { metrics, directory, limits } = &door;
    request_context(metrics, request, |request| {
        render_errors(directory, request, |request| {
            rate_limit(limits, request, |request| screen(request, |request| next.run(request)))
        })
    })
    .await
}

/// Every route the API serves.
pub fn table() -> Vec<Route> {
    all().table
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let routes = all();
    crate::openapi::document(routes.paths, routes.schemas)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("No route for {method} {}", uri.path())).with_code("route_not_found")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("{method} is not allowed on {}", uri.path()))
        .with_code("method_not_allowed")
        .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}
