//! Tenants' RSA keys, for seed 001's RSA-SHA256 (PKCS#1 v1.5) signed
//! answers. A tenant's key is made on its first seed-001 call (making a
//! 2048-bit key takes a moment, and most tenants never speak seed 001),
//! stored sealed by the master key like the Ed25519 keys, and kept open in
//! memory. Two processes making one at once keep whichever was stored
//! first. Keys are made with the `rsa` crate (ring can't make RSA keys)
//! and sign with ring, several times faster: signing is most of a seed-001
//! answer's cost.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::master::MasterKey;
use chrono::{SecondsFormat, Utc};
use keyledger_eventlog::{on_pool, Database};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};

use super::DirectoryError;

/// The size of a new key: the document asks for at least 2048 bits.
const BITS: usize = 2048;

/// A tenant's RSA key, open.
pub struct RsaSigner {
    pub kid: String,
    /// The public key as PEM (SubjectPublicKeyInfo).
    pub public_pem: String,
    key: RsaKeyPair,
    random: SystemRandom,
}

impl RsaSigner {
    /// The RSA-SHA256 PKCS#1 v1.5 signature of `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.random, bytes, &mut signature)
            .expect("an RSA key that opened signs any message");
        signature
    }
}

pub struct RsaKeys {
    db: Database,
    master: MasterKey,
    open: RwLock<HashMap<String, Arc<RsaSigner>>>,
    /// One key made at a time in this process.
    making: tokio::sync::Mutex<()>,
}

impl RsaKeys {
    pub fn new(db: Database, master: MasterKey) -> Self {
        Self { db, master, open: RwLock::default(), making: tokio::sync::Mutex::new(()) }
    }

    /// The tenant's key, made if it has none.
    pub async fn for_tenant(&self, tenant_id: &str) -> Result<Arc<RsaSigner>, DirectoryError> {
        if let Some(signer) = self.cached(tenant_id) {
            return Ok(signer);
        }
        let signer = match self.load(tenant_id).await? {
            Some(signer) => signer,
            None => {
                // One key made at a time; another caller may have made
                // this one meanwhile (ON CONFLICT keeps the first).
                let _making = self.making.lock().await;
                if self.load(tenant_id).await?.is_none() {
                    self.make(tenant_id).await?;
                }
                self.load(tenant_id).await?.ok_or_else(|| DirectoryError::Sealed { kid: tenant_id.to_owned() })?
            }
        };
        let signer = Arc::new(signer);
        self.open.write().unwrap_or_else(|p| p.into_inner()).insert(tenant_id.to_owned(), signer.clone());
        Ok(signer)
    }

    fn cached(&self, tenant_id: &str) -> Option<Arc<RsaSigner>> {
        self.open.read().unwrap_or_else(|p| p.into_inner()).get(tenant_id).cloned()
    }

    async fn load(&self, tenant_id: &str) -> Result<Option<RsaSigner>, DirectoryError> {
        const SQL: &str = "SELECT kid, private_key FROM rsa_signing_keys WHERE tenant_id = $1";
        let row: Option<(String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(tenant_id).fetch_optional(pool).await)?;
        let Some((kid, sealed)) = row else { return Ok(None) };
        let sealed_error = || DirectoryError::Sealed { kid: kid.clone() };
        let der = self.master.open(&sealed, &seal_context(tenant_id, &kid)).map_err(|_| sealed_error())?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|_| sealed_error())?;
        // The published key is the private key's own, whatever the row says.
        let private = RsaPrivateKey::from_pkcs8_der(&der).map_err(|_| sealed_error())?;
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|_| sealed_error())?;
        Ok(Some(RsaSigner { kid, public_pem, key, random: SystemRandom::new() }))
    }

    async fn make(&self, tenant_id: &str) -> Result<(), DirectoryError> {
        const SQL: &str = "INSERT INTO rsa_signing_keys (tenant_id, kid, public_pem, private_key, created_at) \
                           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO NOTHING";
        let (kid, public_pem, der) =
            tokio::task::spawn_blocking(new_key).await.map_err(DirectoryError::KeyGeneration)?;
        let sealed = self.master.seal(&der, &seal_context(tenant_id, &kid));
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(tenant_id).bind(&kid).bind(&public_pem).bind(&sealed).bind(&now)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}

/// What a key is sealed to: its tenant and id, so a sealed key copied to
/// another tenant's row does not open.
fn seal_context(tenant_id: &str, kid: &str) -> String {
    format!("rsa:{tenant_id}:{kid}")
}

/// A new key: its id (the first 16 bytes of the SHA-256 of its public DER,
/// hex), its public PEM and its private PKCS#8 DER.
fn new_key() -> (String, String, Vec<u8>) {
    let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, BITS).expect("a 2048-bit RSA key can be made");
    let public = private.to_public_key();
    let public_der = public.to_public_key_der().expect("an RSA public key encodes");
    let kid = hex::encode(&Sha256::digest(public_der.as_bytes())[..16]);
    let public_pem = public.to_public_key_pem(LineEnding::LF).expect("an RSA public key encodes");
    let der = private.to_pkcs8_der().expect("an RSA private key encodes").as_bytes().to_vec();
    (kid, public_pem, der)
}

/// Every RSA key opens with this master key (run at start-up, beside the
/// Ed25519 keys' check).
pub async fn check_all_open(db: &Database, master: &MasterKey) -> Result<usize, DirectoryError> {
    let rows: Vec<(String, String, String)> = on_pool!(db, pool =>
        sqlx::query_as("SELECT tenant_id, kid, private_key FROM rsa_signing_keys").fetch_all(pool).await)?;
    for (tenant_id, kid, sealed) in &rows {
        master.open(sealed, &seal_context(tenant_id, kid)).map_err(|_| DirectoryError::Sealed { kid: kid.clone() })?;
    }
    Ok(rows.len())
}
