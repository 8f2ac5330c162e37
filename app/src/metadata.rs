//! The metadata recorded with every event: who, for which tenant, from
//! where, in which request, when.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The API dialect the request spoke (`native`, `seed001`, ...).
    pub api: &'a str,
}

/// Who made it: an API key's id and role. None: an anonymous client call.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub key_id: &'a str,
    pub role: &'a str,
}

/// Metadata for an event caused by `actor` (None: an anonymous client
/// endpoint) on a license of `tenant_id`.
pub fn event_metadata(
    origin: Origin<'_>,
    actor: Option<Actor<'_>>,
    tenant_id: &str,
    at: DateTime<Utc>,
) -> HashMap<String, String> {
    let mut metadata = HashMap::from([
        ("tenant_id".to_owned(), tenant_id.to_owned()),
        ("request_id".to_owned(), origin.request_id.to_owned()),
        ("occurred_at".to_owned(), occurred_at(at)),
        ("actor_role".to_owned(), actor.map_or("client", |a| a.role).to_owned()),
        ("api".to_owned(), origin.api.to_owned()),
    ]);
    if let Some(actor) = actor {
        metadata.insert("actor_key_id".to_owned(), actor.key_id.to_owned());
    }
    if let Some(ip) = origin.client_ip {
        metadata.insert("client_ip".to_owned(), ip.to_owned());
    }
    if let Some(user_agent) = origin.user_agent {
        metadata.insert("user_agent".to_owned(), user_agent.to_owned());
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
