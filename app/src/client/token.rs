//! Offline license tokens: a license's newest state this process knows,
//! as claims signed by the tenant's current key (README, "Offline license
//! tokens"). Their claims name the state's event sequence and chain hash.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use keyledger_domain::{License, LicenseKey};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use super::{ClientError, ClientService, Machine};
use crate::signing::{jws, ActiveKey};

impl ClientService {
    /// An offline license token for the machine (`machine_id` as the client
    /// sent it), signed by `signer`, and when it expires. A token outlives
    /// the call by days, so it describes the license's latest committed
    /// state, not this process's memory of it: a block or a suspension
    /// committed by any process a moment ago refuses the token.
    pub async fn token(
        &self,
        signer: &ActiveKey,
        license_id: &str,
        machine: &Machine,
        machine_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), ClientError> {
        let (license, version, hash) = self.latest(license_id).await?;
        license.validate(&machine.hash, now)?;
        Ok(license_token(signer, &license, version, &hash, machine_id, self.settings.token_ttl, now))
    }

    /// The license's latest committed state with its event sequence and
    /// chain hash: this process's memory when the log's last event is the
    /// one memory is at (one index-only read), else loaded from the log.
    async fn latest(&self, license_id: &str) -> Result<(Arc<License>, i64, String), ClientError> {
        if let Some(entry) = self.stores.memory.get(license_id) {
            if let Some(hash) = entry.last_hash_hex() {
                let last = self.stores.log.last_sequence(license_id).await.map_err(|e| ClientError::Failed {
                    context: "the license's last event unreadable",
                    source: e.into(),
                })?;
                if last == Some(entry.version) {
                    return Ok((entry.license, entry.version, hash));
                }
            }
        }
        let (license, version, hash) = self.stores.licenses.load(license_id).await?;
        Ok((Arc::new(license), version, hash))
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
