//! Offline license tokens: a license's newest state this process knows,
//! as claims signed by the tenant's current key (README, "Offline license
//! tokens"). Their claims name the state's event sequence and chain hash.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use keyledger_domain::{License, LicenseKey};
use sha2::{Digest, Sha256};

use super::{ClientError, ClientService};
use crate::signing::{jws, ActiveKey};

impl ClientService {
    /// An offline license token for `machine_id` (as the client sent it),
    /// signed by `signer`, and when it expires.
    pub async fn token(
        &self,
        signer: &ActiveKey,
        license_id: &str,
        machine_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), ClientError> {
        let ttl = self.settings.token_ttl;
        // This process's newest state when it knows the state's chain hash
        // (a command of its own just put it there): no database read.
        if let Some(entry) = self.stores.memory.get(license_id) {
            if let Some(hash) = entry.last_hash_hex() {
                return Ok(license_token(signer, &entry.license, entry.version, &hash, machine_id, ttl, now));
            }
        }
        let (license, version, hash) = self.stores.licenses.head(license_id).await?;
        Ok(license_token(signer, &license, version, &hash, machine_id, ttl, now))
    }
}

/// The token's claims: the license at its event `version` with chain
/// `hash`.
fn license_token(
    signer: &ActiveKey,
    license: &License,
    version: i64,
    hash: &str,
    machine_id: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    let expires = license.expires_at.map_or(now + ttl, |at| at.min(now + ttl));
    let claims = TokenClaims {
        iss: format!("keyledger:{}", license.tenant_id),
        sub: &license.id,
        // Unique, not secret: from the thread's generator, no system call.
        jti: uuid::Builder::from_random_bytes(rand::random()).into_uuid(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: expires.timestamp(),
        license_key: license.license_key.as_ref(),
        machine: hex::encode(Sha256::digest(machine_id.as_bytes())),
        status: license.status_at(now),
        license_type: license.license_type,
        max_activations: license.max_activations.get(),
        max_connections: license.max_connections,
        expires_at: license.expires_at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        product_id: license.product_id.as_deref(),
        sequence: version,
        hash,
    };
    (jws::jwt(&signer.kid, &signer.key, &claims), expires)
}

/// An offline license token's claims. A struct, not a JSON map: every
/// verify and activate makes one, and serialising fields in place costs a
/// fraction of building a map.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenClaims<'a> {
    iss: String,
    sub: &'a str,
    jti: uuid::Uuid,
    iat: i64,
    nbf: i64,
    exp: i64,
    license_key: Option<&'a LicenseKey>,
    machine: String,
    status: keyledger_domain::LicenseStatus,
    license_type: keyledger_domain::LicenseType,
    max_activations: u32,
    max_connections: Option<u32>,
    expires_at: Option<String>,
    product_id: Option<&'a str>,
    sequence: i64,
    hash: &'a str,
}
