//! The HTTP surface: every dialect's routes and the server's own, the
//! layers every request passes, and the table of every route, which tests
//! walk so that none is missed.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use keyledger_app::signing::Directory;
use keyledger_http::{ApiError, AppState, Dialects, Route, Routes};

use crate::context::request_context;
use crate::dialect_errors::render_errors;
use crate::limits::{rate_limit, LimitLayer};
use crate::ops::OpsState;
use crate::screen::screen;

/// The largest request body accepted; every body keyledger takes is a few
/// hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The dialects this server speaks.
pub fn dialects() -> Dialects {
    keyledger_dialects::all()
}

/// Every route's registration (its table and OpenAPI operations) without
/// the handlers' state: for the table and the document.
fn described(dialects: &Dialects) -> Routes<()> {
    let ops = crate::ops::routes();
    let mut routes = dialects.routes();
    routes.table.extend(ops.table);
    routes.paths.merge(ops.paths);
    routes.schemas.extend(ops.schemas);
    Routes { router: Router::new(), table: routes.table, paths: routes.paths, schemas: routes.schemas }
}

pub fn router(app: AppState, ops: OpsState) -> Router {
    let dialects = ops.limits.dialects().clone();
    let panel = ops.panel.clone();
    let door = FrontDoor {
        metrics: app.metrics.clone(),
        directory: app.directory.clone(),
        limits: LimitLayer { limits: ops.limits.clone(), metrics: app.metrics.clone() },
        dialects: dialects.clone(),
        panel: panel.clone(),
    };
    let pages = match &panel {
        Some(config) => keyledger_panel::router(app.clone(), config.as_ref().clone()),
        None => Router::new(),
    };
    dialects
        .routes()
        .with_state(app)
        .merge(crate::ops::routes().with_state(ops))
        .router
        .merge(pages)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(door, front_door))
}

/// What the front door's layers need: handles, cheap to clone per request.
#[derive(Clone)]
struct FrontDoor {
    metrics: Arc<crate::metrics::Metrics>,
    directory: Arc<Directory>,
    limits: LimitLayer,
    dialects: Dialects,
    /// The admin panel's settings: its pages skip the API's screen.
    panel: Option<Arc<keyledger_panel::PanelConfig>>,
}

/// The layers every request passes, outermost first: its request id, span
/// and metrics, error answers in the dialect's shape, the rate limits, the
/// request screen; then the route. One middleware rather than one each,
/// because axum clones a middleware's inner stack of services on every
/// request: four layers cost four nested clones, one costs one.
async fn front_door(State(door): State<FrontDoor>, request: Request, next: Next) -> Response {
    let FrontDoor { metrics, directory, limits, dialects, panel } = &door;
    // The panel's pages take forms, not JSON, and answer in HTML: they
    // pass the request context and the rate limits (a wrong password
    // counts toward the address's block), not the API's screen.
    if let Some(panel) = panel.as_deref().filter(|panel| panel.owns(request.uri().path())) {
        return request_context(metrics, dialects, request, |request| async move {
            keyledger_panel::html_errors(panel, rate_limit(limits, request, |request| next.run(request)).await)
        })
        .await;
    }
    request_context(metrics, dialects, request, |request| {
        render_errors(directory, dialects, request, |request| {
            rate_limit(limits, request, |request| screen(request, |request| next.run(request)))
        })
    })
    .await
}

/// Every route the API serves.
pub fn table() -> Vec<Route> {
    described(&dialects()).table
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let routes = described(&dialects());
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
