//! Event metadata from a request: `keyledger_app::metadata` with the
//! request's context and caller.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keyledger_app::metadata::{Actor, Origin};

use crate::auth::Caller;
use crate::extract::RequestContext;

/// Metadata for an event caused by `caller` (None: an anonymous client
/// endpoint) on a license of `tenant_id`.
pub fn event_metadata(
    context: &RequestContext,
    caller: Option<&Caller>,
    tenant_id: &str,
    at: DateTime<Utc>,
) -> HashMap<String, String> {
    let origin = Origin {
        request_id: &context.request_id,
        client_ip: context.client_ip.as_deref(),
        user_agent: context.user_agent.as_deref(),
        api: context.api,
    };
    let actor = caller.map(|caller| Actor { key_id: &caller.key_id, role: caller.role.as_str() });
    keyledger_app::metadata::event_metadata(origin, actor, tenant_id, at)
}
