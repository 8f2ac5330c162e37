//! Read-only analytics tokens (the V2 License Server's
//! `GET /api/admin/license/auth-token`): an HS256 JWT valid for an hour,
//! under a secret of the tenant's own that never leaves the server. The
//! secret is made once per tenant, stored sealed with the master key (so
//! every process signs and checks with the same one), and held in memory
//! once read. A token names its tenant (`sub`) and its scope
//! (`analytics:read`); the statistics endpoints of that tenant accept it,
//! and nothing else does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use keyledger_eventlog::Database;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::master::MasterKey;

/// How long a token lasts.
pub const TOKEN_LIFETIME: Duration = Duration::hours(1);
/// The one scope a token carries.
pub const SCOPE: &str = "analytics:read";
const ISSUER: &str = "keyledger";

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("analytics tokens: the tenant's secret could not be read or stored")]
    Store(#[from] keyledger_eventlog::EventLogError),
    #[error("analytics tokens: the tenant's secret does not open with this master key")]
    Sealed(#[from] crate::master::MasterKeyError),
}

pub struct AnalyticsTokens {
    db: Database,
    master: MasterKey,
    secrets: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl AnalyticsTokens {
    pub fn new(db: Database, master: MasterKey) -> Self {
        Self { db, master, secrets: Mutex::default() }
    }

    /// The tenant's secret; with `make`, made and stored (sealed) when it
    /// has none yet. Only issuing makes one: a token naming a tenant that
    /// was never issued one writes nothing.
    async fn secret(&self, tenant_id: &str, make: bool) -> Result<Option<Arc<[u8]>>, AnalyticsError> {
        if let Some(secret) = self.secrets.lock().unwrap_or_else(|p| p.into_inner()).get(tenant_id) {
            return Ok(Some(secret.clone()));
        }
        let name = format!("analytics-token:{tenant_id}");
        let stored = if make {
            let mut fresh = [0u8; 32];
            OsRng.fill_bytes(&mut fresh);
            Some(self.db.shared_secret(&name, &self.master.seal(&fresh, &name)).await?)
        } else {
            self.db.stored_secret(&name).await?
        };
        let Some(stored) = stored else { return Ok(None) };
        let secret: Arc<[u8]> = self.master.open(&stored, &name)?.into();
        self.secrets.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant_id.to_owned(), secret.clone());
        Ok(Some(secret))
    }

    /// A token for the tenant, and when it expires.
    pub async fn issue(&self, tenant_id: &str, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), AnalyticsError> {
        let expires = now + TOKEN_LIFETIME;
        let header = json!({ "alg": "HS256", "typ": "JWT" });
        let claims = json!({
            "iss": ISSUER,
            "sub": tenant_id,
            "scope": SCOPE,
            "iat": now.timestamp(),
            "exp": expires.timestamp(),
        });
        let input = format!("{}.{}", encode(&header), encode(&claims));
        let secret = self.secret(tenant_id, true).await?.expect("made when missing");
        let signature = sign(&secret, input.as_bytes());
        Ok((format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)), expires))
    }

    /// The tenant a token was issued for, if it is one of ours, unexpired,
    /// with the analytics scope; None for anything else.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Option<String>, AnalyticsError> {
        let Some((input, signature)) = token.rsplit_once('.') else { return Ok(None) };
        let Some((header, claims)) = input.split_once('.') else { return Ok(None) };
        let decode = |part: &str| -> Option<Value> { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok() };
        let (Some(header), Some(claims)) = (decode(header), decode(claims)) else { return Ok(None) };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else { return Ok(None) };
        let Some(tenant_id) = claims["sub"].as_str() else { return Ok(None) };
        if header["alg"] != "HS256" || claims["iss"] != ISSUER || claims["scope"] != SCOPE {
            return Ok(None);
        }
        if claims["exp"].as_i64().is_none_or(|exp| exp <= now.timestamp()) {
            return Ok(None);
        }
        let Some(secret) = self.secret(tenant_id, false).await? else { return Ok(None) };
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).expect("HMAC takes any key length");
        mac.update(input.as_bytes());
        Ok(mac.verify_slice(&signature).is_ok().then(|| tenant_id.to_owned()))
    }
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}
