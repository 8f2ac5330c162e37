//! Machine fingerprints as Keygen's clients sent them, sealed with the
//! master key. The log keeps only a machine's keyed hash, which is all the
//! license rules need; a Keygen client also wants its fingerprint shown
//! back on the machine, and a machine file is encrypted under the license
//! key followed by the fingerprint, so the Keygen dialect keeps them here,
//! one a device. Devices activated through another dialect have none.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};
use keyledger_eventlog::{on_pool, Database};

use crate::master::{MasterKey, MasterKeyError};

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("machine fingerprints: a query failed")]
    Database(#[from] sqlx::Error),
    #[error("machine fingerprints: a sealed fingerprint does not open with this master key")]
    Sealed(#[from] MasterKeyError),
}

#[derive(Clone)]
pub struct FingerprintStore {
    db: Database,
    master: MasterKey,
}

/// The sealing context binds a fingerprint to its device: a sealed value
/// copied to another row does not open there.
fn context(device_id: &str) -> String {
    format!("keygen-fingerprint:{device_id}")
}

impl FingerprintStore {
    pub fn new(db: Database, master: MasterKey) -> Self {
        Self { db, master }
    }

    /// Keeps the fingerprint of a device (the same device always has the
    /// same one: its id is derived from the fingerprint's keyed hash).
    pub async fn keep(
        &self,
        tenant_id: &str,
        license_id: &str,
        device_id: &str,
        fingerprint: &str,
    ) -> Result<(), FingerprintError> {
        const SQL: &str = "INSERT INTO keygen_fingerprints (device_id, tenant_id, license_id, sealed, created_at) \
                           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id) DO NOTHING";
        let sealed = self.master.seal(fingerprint.as_bytes(), &context(device_id));
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(device_id)
            .bind(tenant_id)
            .bind(license_id)
            .bind(&sealed)
            .bind(&now)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// The fingerprints kept for a license's devices, by device id.
    pub async fn of_license(&self, license_id: &str) -> Result<HashMap<String, String>, FingerprintError> {
        const SQL: &str = "SELECT device_id, sealed FROM keygen_fingerprints WHERE license_id = $1";
        let rows: Vec<(String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(license_id).fetch_all(pool).await)?;
        let mut found = HashMap::with_capacity(rows.len());
        for (device_id, sealed) in rows {
            let opened = self.master.open(&sealed, &context(&device_id))?;
            found.insert(device_id, String::from_utf8_lossy(&opened).into_owned());
        }
        Ok(found)
    }
}
