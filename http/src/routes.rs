//! A router that remembers what it was given: each route comes with its
//! handler's OpenAPI operation (utoipa-axum's `routes!`), so the table of
//! routes and the document are built from the same registrations.

use axum::http::Method;
use axum::Router;
use utoipa::openapi::path::{Operation, PathItem, Paths};
use utoipa::openapi::{RefOr, Schema};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::state::AppState;

/// One route: a method and a path template such as `/api/v1/licenses/{license_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: String,
}

/// Routes with their OpenAPI paths and schemas, over handlers whose state
/// is `S` (the application state for the dialects).
pub struct Routes<S = AppState> {
    pub router: Router<S>,
    pub table: Vec<Route>,
    pub paths: Paths,
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self { router: Router::new(), table: Vec::new(), paths: Paths::new(), schemas: Vec::new() }
    }

    /// Adds the handlers of one `routes!(…)`, which share a path.
    pub fn add(mut self, (schemas, paths, method_router): UtoipaMethodRouter<S>) -> Self {
        for (path, item) in &paths.paths {
            self.router = self.router.route(path, method_router.clone());
            self.table.extend(methods(item).into_iter().map(|method| Route { method, path: path.clone() }));
        }
        self.paths.merge(paths);
        self.schemas.extend(schemas);
        self
    }

    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self.paths.merge(other.paths);
        self.schemas.extend(other.schemas);
        self
    }

    /// `other`'s routes under `prefix`; its `/` is the prefix itself.
    /// Operation ids get `id_prefix`, so each copy of a route stays unique.
    pub fn nest(mut self, prefix: &str, other: Routes<S>, id_prefix: &str) -> Self {
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

    /// The same routes with their state given: handlers of any state
    /// become one router.
    pub fn with_state(self, state: S) -> Routes<()> {
        Routes { router: self.router.with_state(state), table: self.table, paths: self.paths, schemas: self.schemas }
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
