//! The API dialects keyledger speaks, one folder each, all over the same
//! client service (`keyledger_app::client`) and the same commands:
//!
//! - [`native`]: keyledger's own API — the client endpoints in the license
//!   format of seed 000 (`/api/v1/licenses/...`, also at that document's
//!   `/api/v1/fastrLicense/...`) and the management API;
//! - `signed_rsa`: `/license/...` with RSA-signed answers (seed 001);
//! - `device_guard`: `/api/licenses/...`, validate-and-activate, generic
//!   errors and per-endpoint limits with progressive blocks (seed 002);
//! - `tenant_jwt`: `/v1/...`, tenant API keys and Ed25519 license tokens
//!   (seed 004);
//! - `v2_server`: the V2 License Server's `/api/license/...` and
//!   `/api/version/...` under the tenant's system key, and its sample
//!   clients' `/api/v1/activate` and `/api/v1/validate` (seed 003);
//! - `keygen`: Keygen's API at `/keygen/{account}/v1/...`, for Keygen's
//!   own client libraries.
//!
//! Each declares its routes, rate-limit rules and error rendering through
//! [`keyledger_http::Dialect`]; the server registers [`all`].

mod device_guard;
mod keygen;
pub mod native;
mod signed_rsa;
mod tenant_jwt;
mod v2_server;

use keyledger_http::Dialects;

/// Every dialect, the native API last: it answers every path no other
/// dialect owns.
pub fn all() -> Dialects {
    Dialects::new(vec![
        Box::new(signed_rsa::SignedRsa),
        // Before device-guard, whose /api/licenses/ holds its bulk routes.
        Box::new(v2_server::V2Server),
        Box::new(device_guard::DeviceGuard),
        Box::new(tenant_jwt::TenantJwt),
        Box::new(keygen::Keygen),
        Box::new(native::Native),
    ])
}
