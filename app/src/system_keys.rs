//! A tenant's system key: the credential of the V2 License Server dialect
//! (`X-API-Key: AF-YYYY-<32 characters>`). A tenant has one at a time:
//! issuing a new one replaces the old in the same transaction as the
//! `SystemKeyIssued` event on the tenant's own stream in the log, so the
//! old key stops working the moment the new one exists, and the log says
//! who issued which and when. Only the key's SHA-256 is stored, and a
//! presented key is looked up by it (the key has no id part to look up
//! by).

use std::collections::HashMap;

use chrono::{Datelike, SecondsFormat, Utc};
use keyledger_eventlog::{
    on_pool, AppendError, Database, EventLog, NewEvent, ProjectedRow, SqlValue, TENANT_AGGREGATE,
};
use rand::distributions::{Distribution, Uniform};
use rand::rngs::OsRng;
use serde_json::json;

use crate::secret::{random_id, sha256_hex};

/// What every system key starts with.
pub const SYSTEM_KEY_PREFIX: &str = "AF-";
/// Random characters after `AF-YYYY-`.
const SECRET_LEN: usize = 32;
/// The event that records an issue.
pub const SYSTEM_KEY_ISSUED: &str = "SystemKeyIssued";
/// Tries of an issue that lost its race to another issue of the tenant.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SystemKeyError {
    #[error("system keys: a query failed")]
    Database(#[from] sqlx::Error),
    #[error("system keys: reading the tenant's stream failed")]
    Log(#[from] keyledger_eventlog::EventLogError),
    #[error("system keys: appending the issue to the tenant's stream failed")]
    Append(#[source] sqlx::Error),
    #[error("system keys: other issues of the tenant's key kept winning the race")]
    Contended,
}

/// A system key as issued: the only time its text exists outside the
/// caller's hands.
#[derive(Debug, Clone)]
pub struct IssuedSystemKey {
    pub id: String,
    pub key: String,
    /// The key this one replaced, which no longer works.
    pub replaced: Option<String>,
}

/// The tenant a presented system key belongs to, and the key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemKeyOwner {
    pub tenant_id: String,
    pub key_id: String,
}

#[derive(Debug, Clone)]
pub struct SystemKeyStore {
    db: Database,
    log: EventLog,
}

/// `AF-<year>-` and 32 upper-case letters and digits, as the document
/// shows its keys.
fn new_key_text() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let pick = Uniform::from(0..ALPHABET.len());
    let secret: String = (0..SECRET_LEN).map(|_| ALPHABET[pick.sample(&mut OsRng)] as char).collect();
    format!("{SYSTEM_KEY_PREFIX}{}-{secret}", Utc::now().year())
}

/// Whether a presented credential has the shape of a system key.
pub fn looks_like_system_key(presented: &str) -> bool {
    let Some(rest) = presented.strip_prefix(SYSTEM_KEY_PREFIX) else { return false };
    let Some((year, secret)) = rest.split_once('-') else { return false };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl SystemKeyStore {
    pub fn new(db: Database, log: EventLog) -> Self {
        Self { db, log }
    }

    /// Issues the tenant's system key, replacing the one it had.
    /// `metadata` is the event's (who asked, from where).
    pub async fn issue(
        &self,
        tenant_id: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<IssuedSystemKey, SystemKeyError> {
        let metadata = serde_json::to_value(metadata).unwrap_or_default();
        for _ in 0..ATTEMPTS {
            let head = self.log.head(TENANT_AGGREGATE, tenant_id).await?;
            let (sequence, previous_hash) = head.unwrap_or((0, String::new()));
            let replaced = self.current_id(tenant_id).await?;
            let issued = IssuedSystemKey { id: format!("sys_{}", random_id(12)), key: new_key_text(), replaced };
            let payload = json!({ SYSTEM_KEY_ISSUED: { "key_id": issued.id, "replaced_key_id": issued.replaced } });
            let event = NewEvent {
                aggregate_type: TENANT_AGGREGATE,
                aggregate_id: tenant_id,
                sequence: sequence + 1,
                event_type: SYSTEM_KEY_ISSUED,
                event_version: "1.0",
                payload: &payload,
                metadata: &metadata,
            };
            let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            let row = ProjectedRow {
                insert_into: "INSERT INTO system_keys (tenant_id, key_id, key_hash, created_at)",
                values: vec![
                    SqlValue::Text(tenant_id.to_owned()),
                    SqlValue::Text(issued.id.clone()),
                    SqlValue::Text(sha256_hex(&issued.key)),
                    SqlValue::Text(created_at),
                ],
                on_conflict: "ON CONFLICT (tenant_id) DO UPDATE SET key_id = excluded.key_id, \
                              key_hash = excluded.key_hash, created_at = excluded.created_at"
                    .to_owned(),
            };
            match self.log.append_after(&[event], &previous_hash, Some(&row)).await {
                Ok(_) => return Ok(issued),
                Err(AppendError::Conflict | AppendError::GuardMoved) => continue,
                Err(AppendError::Database(error)) => return Err(SystemKeyError::Append(error)),
            }
        }
        Err(SystemKeyError::Contended)
    }

    /// The id of the tenant's system key, if it has one.
    pub async fn current_id(&self, tenant_id: &str) -> Result<Option<String>, sqlx::Error> {
        const SQL: &str = "SELECT key_id FROM system_keys WHERE tenant_id = $1";
        on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(tenant_id).fetch_optional(pool).await)
    }

    /// Whose system key `presented` is, if it is a current one.
    pub async fn find(&self, presented: &str) -> Result<Option<SystemKeyOwner>, sqlx::Error> {
        if !looks_like_system_key(presented) {
            return Ok(None);
        }
        const SQL: &str = "SELECT tenant_id, key_id FROM system_keys WHERE key_hash = $1";
        let row: Option<(String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(sha256_hex(presented)).fetch_optional(pool).await)?;
        Ok(row.map(|(tenant_id, key_id)| SystemKeyOwner { tenant_id, key_id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_has_the_documents_shape() {
        let key = new_key_text();
        assert!(looks_like_system_key(&key), "{key}");
        assert_eq!(key.len(), "AF-2026-".len() + SECRET_LEN);
        assert!(!looks_like_system_key("AF-2026-short"));
        assert!(!looks_like_system_key("klk_abc_def"));
    }
}
