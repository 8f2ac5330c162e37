//! The metadata recorded with every event: who, for which tenant, from
//! where, in which request, when.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};

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
    let mut metadata = HashMap::from([
        ("tenant_id".to_owned(), tenant_id.to_owned()),
        ("request_id".to_owned(), context.request_id.clone()),
        ("occurred_at".to_owned(), occurred_at(at)),
        ("actor_role".to_owned(), caller.map_or("client", |c| c.role.as_str()).to_owned()),
    ]);
    if let Some(caller) = caller {
        metadata.insert("actor_key_id".to_owned(), caller.key_id.clone());
    }
    if let Some(ip) = &context.client_ip {
        metadata.insert("client_ip".to_owned(), ip.clone());
    }
    if let Some(user_agent) = &context.user_agent {
        metadata.insert("user_agent".to_owned(), user_agent.clone());
    }
    metadata
}

/// Metadata for an event the server causes by itself (`actor_role`
/// `system`), such as an expiry found by the sweeper.
pub fn system_metadata(tenant_id: &str, actor: &str, at: DateTime<Utc>) -> HashMap<String, String> {
    HashMap::from([
        ("tenant_id".to_owned(), tenant_id.to_owned()),
        ("request_id".to_owned(), format!("{actor}-{}", uuid::Uuid::new_v4())),
        ("occurred_at".to_owned(), occurred_at(at)),
        ("actor_role".to_owned(), "system".to_owned()),
        ("actor_key_id".to_owned(), actor.to_owned()),
    ])
}

/// Microsecond precision, so a license's state can be asked for between
/// two events that happened within the same second.
fn occurred_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}
