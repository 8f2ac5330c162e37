//! The native API: the license format of seed 000 (its own paths, and
//! keyledger's `/api/v1/licenses/...` for the same handlers) and
//! keyledger's management surface. The client endpoints are in `client`;
//! the other dialects serve the same client calls at their own paths.

mod anomalies;
mod audit;
mod catalog;
pub(crate) mod client;
mod customers;
mod devices;
mod keys;
pub(crate) mod leads;
pub(crate) mod licenses;
mod policy;
pub(crate) mod products;
mod releases;
pub(crate) mod resources;
pub mod schemas;
mod staff;
mod tenants;
mod webhooks;
pub mod wire;

use axum::http::StatusCode;
use axum::response::Response;
use keyledger_app::signing::Directory;
use keyledger_http::{ErrorParts, Routes};

pub use customers::CustomerResponse;
pub use products::ProductResponse;
pub use releases::ReleaseResponse;

/// keyledger's own API: seed 000's license format and the management API.
/// It answers every path no other dialect owns.
pub struct Native;

impl keyledger_http::Dialect for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn owns(&self, _path: &str) -> bool {
        true
    }

    fn routes(&self) -> Routes {
        routes()
    }

    /// On the client endpoints an error met before the handler ran is
    /// answered as the endpoint answers its own refusals: in its shape and
    /// signed. Elsewhere the native JSON error stands as it is.
    fn render_error(
        &self,
        directory: &Directory,
        path: &str,
        status: StatusCode,
        error: &ErrorParts,
    ) -> Option<Response> {
        let shape = client::refusal_shape(path)?;
        Some(client::early_refusal(directory, shape, status, error))
    }
}

fn routes() -> Routes {
    Routes::new()
        .merge(tenants::routes())
        .merge(staff::routes())
        .merge(audit::platform_routes())
        .merge(keys::routes())
        .merge(webhooks::routes())
        .merge(anomalies::routes())
        .merge(products::routes())
        .merge(customers::routes())
        .merge(resources::routes())
        .merge(leads::routes())
        .merge(releases::routes())
        // One set of handlers under the native path and seed 000's own.
        .nest("/api/v1/licenses", license_routes(), "")
        .nest("/api/v1/fastrLicense", license_routes(), "fastr_")
}

fn license_routes() -> Routes {
    licenses::routes().merge(devices::routes()).merge(client::routes()).merge(audit::routes())
}
