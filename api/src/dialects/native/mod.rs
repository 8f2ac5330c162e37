//! The native API: seed 000's wire format and keyledger's own management
//! surface. The client endpoints are in `client`; the other dialects serve
//! the same commands at their own paths (`crate::dialects`).

mod anomalies;
mod audit;
mod catalog;
pub(crate) mod client;
mod customers;
mod devices;
mod docs;
mod health;
mod keys;
pub(crate) mod licenses;
mod metrics;
mod policy;
pub(crate) mod products;
mod releases;
mod tenants;
mod webhooks;

use crate::router::Routes;

pub use customers::CustomerResponse;
pub use products::ProductResponse;
pub use releases::ReleaseResponse;

pub fn routes() -> Routes {
    Routes::new()
        .merge(health::routes())
        .merge(tenants::routes())
        .merge(audit::platform_routes())
        .merge(keys::routes())
        .merge(metrics::routes())
        .merge(docs::routes())
        .merge(webhooks::routes())
        .merge(anomalies::routes())
        .merge(products::routes())
        .merge(customers::routes())
        .merge(releases::routes())
        // One set of handlers under the native path and seed 000's own.
        .nest("/api/v1/licenses", license_routes(), "")
        .nest("/api/v1/fastrLicense", license_routes(), "fastr_")
}

fn license_routes() -> Routes {
    licenses::routes().merge(devices::routes()).merge(client::routes()).merge(audit::routes())
}
