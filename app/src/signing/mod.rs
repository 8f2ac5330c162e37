//! Signing keys and the tenant settings every answer depends on, cached in
//! each process so the client endpoints never wait on the database.
//!
//! Every tenant has an Ed25519 key pair (made when the tenant is, or at
//! start-up for tenants older than signing), and may rotate it: the newest
//! unretired key signs, every unretired key is published in the tenant's
//! JWKS so tokens signed before a rotation still verify. A retired key
//! signs nothing from the moment it is retired, and stays published until
//! its `published_until` (the token lifetime later, unless retired
//! immediately): a process that signed with it in the second before it
//! heard of the rotation and retirement signed something that verifies. A platform key signs what can't be
//! attributed to a tenant (a refusal for an unknown license key). Private
//! keys are stored sealed by the [`MasterKey`].
//!
//! Each process holds a [`Directory`] snapshot. A change made anywhere
//! bumps `directory_version`; every process polls that one row each second
//! and reloads when it moved, so a rotation, a retirement or a new setting
//! reaches every process within about a second.

pub mod jws;
pub mod rsa_keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{SecondsFormat, Utc};
use ed25519_dalek::SigningKey;
use keyledger_eventlog::{on_pool, Database};
use rand::rngs::OsRng;

pub use crate::master::MasterKey;

const ALGORITHM: &str = "Ed25519";
const MASTER_CHECK_NAME: &str = "master_key_check";
const MASTER_CHECK_TEXT: &[u8] = b"keyledger master key check";
pub use crate::tenancy::BUMP_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("signing keys: a query failed")]
    Database(#[from] sqlx::Error),
    #[error("signing keys: reading the master key's check value failed")]
    MasterCheck(#[source] keyledger_eventlog::EventLogError),
    #[error("a new RSA signing key could not be made")]
    KeyGeneration(#[source] tokio::task::JoinError),
    #[error(
        "the signing key {kid} in the database does not open with this master key: every process on one database needs the master key the keys were sealed with (KEYLEDGER_MASTER_KEY, or the master-key file of the data directory where they were made)"
    )]
    Sealed { kid: String },
    #[error(
        "this master key is not the one the database's secrets were sealed with: give this process the same KEYLEDGER_MASTER_KEY as the others"
    )]
    WrongMasterKey,
}

/// A key that can sign: the newest unretired key of its owner.
pub struct ActiveKey {
    pub kid: String,
    pub key: SigningKey,
}

/// A public key as published and listed.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub kid: String,
    /// The raw public key, base64url (a JWK's `x`).
    pub x: String,
    pub created_at: String,
    pub retired_at: Option<String>,
    /// For a retired key, until when it is still published.
    pub published_until: Option<String>,
}

impl PublicKey {
    /// Published (in the JWKS, and verifying) at `now`: not retired, or
    /// retired with its grace still running.
    pub fn published_at(&self, now: &str) -> bool {
        self.retired_at.is_none() || self.published_until.as_deref().is_some_and(|until| until > now)
    }
}

/// What the client endpoints need of a tenant.
pub struct TenantKeys {
    pub require_client_key: bool,
    pub current: Arc<ActiveKey>,
    /// Every unretired key, and every retired one still within its grace
    /// when this was loaded, newest first: see [`TenantKeys::verifying`].
    pub published: Vec<PublicKey>,
}

impl TenantKeys {
    /// The keys that verify now, newest first: a retired key's grace ends
    /// by the clock, without waiting for a reload.
    pub fn verifying(&self) -> impl Iterator<Item = &PublicKey> {
        let now = now();
        self.published.iter().filter(move |key| key.published_at(&now))
    }
}

#[derive(Default)]
struct Snapshot {
    tenants: HashMap<String, Arc<TenantKeys>>,
}

pub struct Directory {
    db: Database,
    master: MasterKey,
    platform: Arc<ActiveKey>,
    platform_public: PublicKey,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The `directory_version` this snapshot reflects.
    version: AtomicI64,
}

type KeyRow = (String, Option<String>, String, String, Option<String>, Option<String>);
const KEY_COLUMNS: &str =
    "SELECT kid, tenant_id, public_key, created_at, retired_at, published_until FROM signing_keys";
/// Keys that are published: unretired, or retired with grace left (`$1`
/// names now).
const PUBLISHED: &str = "(retired_at IS NULL OR published_until > $1)";

fn public_key((kid, _, x, created_at, retired_at, published_until): KeyRow) -> PublicKey {
    PublicKey { kid, x, created_at, retired_at, published_until }
}

fn now() -> String {
    stamp(Utc::now())
}

fn stamp(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Directory {
    /// Checks the master key against the database, makes any missing key
    /// (the platform's, each tenant's), and loads every tenant.
    pub async fn open(db: Database, master: MasterKey) -> Result<Self, DirectoryError> {
        check_master_key(&db, &master).await?;
        let platform = match load_current(&db, &master, None).await? {
            Some(key) => key,
            None => {
                insert_key(&db, &master, None).await?;
                // Processes starting together on a new database may each
                // have made one: all of them sign with the newest.
                load_current(&db, &master, None).await?.expect("a platform key was just made")
            }
        };
        let platform_public = PublicKey {
            x: jws::public_x(&platform.key),
            kid: platform.kid.clone(),
            created_at: String::new(),
            retired_at: None,
            published_until: None,
        };
        let directory = Self {
            db,
            master,
            platform: Arc::new(platform),
            platform_public,
            snapshot: RwLock::default(),
            version: AtomicI64::new(-1),
        };
        let tenants: Vec<String> =
            on_pool!(&directory.db, pool => sqlx::query_scalar("SELECT id FROM tenants").fetch_all(pool).await)?;
        for tenant in tenants {
            if load_current(&directory.db, &directory.master, Some(&tenant)).await?.is_none() {
                insert_key(&directory.db, &directory.master, Some(&tenant)).await?;
            }
        }
        directory.reload().await?;
        Ok(directory)
    }

    /// The version of the settings this process holds.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// The key that signs what no tenant can be named for.
    pub fn platform(&self) -> &Arc<ActiveKey> {
        &self.platform
    }

    pub fn platform_public(&self) -> &PublicKey {
        &self.platform_public
    }

    /// The tenant's keys and settings: from memory, or, for a tenant made
    /// by another process in the last second, from the database.
    pub async fn tenant(&self, tenant_id: &str) -> Result<Option<Arc<TenantKeys>>, DirectoryError> {
        if let Some(found) = self.cached(tenant_id) {
            return Ok(Some(found));
        }
        let Some(loaded) = self.load_tenant(tenant_id).await? else { return Ok(None) };
        let loaded = Arc::new(loaded);
        let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        if let Some(newer) = snapshot.tenants.get(tenant_id) {
            // A reload got here first, with what is at least as new.
            return Ok(Some(newer.clone()));
        }
        let mut tenants = snapshot.tenants.clone();
        tenants.insert(tenant_id.to_owned(), loaded.clone());
        *snapshot = Arc::new(Snapshot { tenants });
        Ok(Some(loaded))
    }

    pub fn cached(&self, tenant_id: &str) -> Option<Arc<TenantKeys>> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).tenants.get(tenant_id).cloned()
    }

    /// Reloads everything if another process changed anything since.
    pub async fn refresh(&self) -> Result<bool, DirectoryError> {
        if read_version(&self.db).await? == self.version() {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    async fn reload(&self) -> Result<(), DirectoryError> {
        // The version is read first: a change landing during the reload
        // leaves the version behind, and the next poll reloads again.
        let version = read_version(&self.db).await?;
        let settings: Vec<(String, i64)> = on_pool!(&self.db, pool =>
            sqlx::query_as("SELECT id, require_client_key FROM tenants").fetch_all(pool).await)?;
        let sql = format!("{KEY_COLUMNS} WHERE tenant_id IS NOT NULL AND {PUBLISHED}");
        let rows: Vec<KeyRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(now()).fetch_all(pool).await)?;
        let mut keys: HashMap<String, Vec<KeyRow>> = HashMap::new();
        for row in rows {
            keys.entry(row.1.clone().unwrap_or_default()).or_default().push(row);
        }
        let mut tenants = HashMap::new();
        for (tenant_id, require_client_key) in settings {
            let rows = keys.remove(&tenant_id).unwrap_or_default();
            if let Some(entry) = self.tenant_keys(require_client_key != 0, rows).await? {
                tenants.insert(tenant_id, Arc::new(entry));
            }
        }
        let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        // Two reloads can finish out of order; the older must not win.
        if version >= self.version() {
            *snapshot = Arc::new(Snapshot { tenants });
            self.version.store(version, Ordering::Release);
        }
        Ok(())
    }

    async fn load_tenant(&self, tenant_id: &str) -> Result<Option<TenantKeys>, DirectoryError> {
        let setting: Option<i64> = on_pool!(&self.db, pool =>
            sqlx::query_scalar("SELECT require_client_key FROM tenants WHERE id = $1")
                .bind(tenant_id).fetch_optional(pool).await)?;
        let Some(require_client_key) = setting else { return Ok(None) };
        let sql = format!("{KEY_COLUMNS} WHERE {PUBLISHED} AND tenant_id = $2");
        let read = || async {
            on_pool!(&self.db, pool => sqlx::query_as::<_, KeyRow>(&sql).bind(now()).bind(tenant_id).fetch_all(pool).await)
        };
        let rows = read().await?;
        let rows = if rows.iter().all(|row| row.4.is_some()) {
            // A tenant made a moment ago, before its key: make it now.
            insert_key(&self.db, &self.master, Some(tenant_id)).await?;
            read().await?
        } else {
            rows
        };
        self.tenant_keys(require_client_key != 0, rows).await
    }

    /// The tenant's entry from its published key rows: the newest
    /// unretired one signs.
    async fn tenant_keys(
        &self,
        require_client_key: bool,
        mut rows: Vec<KeyRow>,
    ) -> Result<Option<TenantKeys>, DirectoryError> {
        rows.sort_by(|a, b| (&b.3, &b.0).cmp(&(&a.3, &a.0)));
        let Some(newest) = rows.iter().find(|row| row.4.is_none()) else { return Ok(None) };
        let current = Arc::new(open_key(&self.db, &self.master, &newest.0).await?);
        let published = rows.into_iter().map(public_key).collect();
        Ok(Some(TenantKeys { require_client_key, current, published }))
    }

    /// Makes the tenant's first key, when the tenant is created.
    pub async fn add_tenant(&self, tenant_id: &str) -> Result<(), DirectoryError> {
        insert_key(&self.db, &self.master, Some(tenant_id)).await?;
        self.reload().await
    }

    /// A new current key for the tenant; the old ones stay published.
    pub async fn rotate(&self, tenant_id: &str) -> Result<PublicKey, DirectoryError> {
        let key = insert_key(&self.db, &self.master, Some(tenant_id)).await?;
        self.reload().await?;
        Ok(self.list(tenant_id).await?.into_iter().find(|k| k.kid == key.kid).expect("the key just made is listed"))
    }

    /// Every key of the tenant, retired ones too, newest first.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<PublicKey>, DirectoryError> {
        let sql = format!("{KEY_COLUMNS} WHERE tenant_id = $1 ORDER BY created_at DESC, kid DESC");
        let rows: Vec<KeyRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(public_key).collect())
    }

    /// Retires an unretired key of the tenant that is not its current one:
    /// it signs nothing from now on, in any process (the directory version
    /// tells the others within about a second), and stays published for
    /// `grace` more, so what another process signed with it in that second,
    /// and tokens it signed before, verify until then. A zero grace drops
    /// it at once (a key thought compromised), also one already retired
    /// and still within its grace.
    pub async fn retire(
        &self,
        tenant_id: &str,
        kid: &str,
        grace: std::time::Duration,
    ) -> Result<Retirement, DirectoryError> {
        let keys = self.list(tenant_id).await?;
        let at = Utc::now();
        let stamped = stamp(at);
        let newest_unretired = keys.iter().find(|k| k.retired_at.is_none()).map(|k| k.kid.as_str());
        match keys.iter().find(|k| k.kid == kid) {
            None => return Ok(Retirement::NotFound),
            Some(_) if newest_unretired == Some(kid) => return Ok(Retirement::Current),
            Some(key) if key.retired_at.is_some() && !(grace.is_zero() && key.published_at(&stamped)) => {
                return Ok(Retirement::NotFound)
            }
            Some(_) => {}
        }
        const SQL: &str = "UPDATE signing_keys SET retired_at = COALESCE(retired_at, $1), published_until = $4
                            WHERE kid = $2 AND tenant_id = $3";
        let until = stamp(at + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX));
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(SQL).bind(&stamped).bind(kid).bind(tenant_id).bind(&until).execute(&mut *tx).await?;
            sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        self.reload().await?;
        Ok(Retirement::Retired)
    }

    pub async fn set_require_client_key(&self, tenant_id: &str, required: bool) -> Result<bool, DirectoryError> {
        const SQL: &str = "UPDATE tenants SET require_client_key = $1 WHERE id = $2";
        let updated = on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(SQL).bind(i64::from(required)).bind(tenant_id).execute(&mut *tx).await?.rows_affected();
            sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
            tx.commit().await?;
            updated
        });
        self.reload().await?;
        Ok(updated == 1)
    }

    /// Tells every process (this one at once) that something cached changed.
    pub async fn changed(&self) -> Result<(), DirectoryError> {
        on_pool!(&self.db, pool => sqlx::query(BUMP_VERSION).execute(pool).await.map(drop))?;
        self.reload().await
    }

    /// Takes in a change that was written, with its version bump, by the
    /// caller (a revoked API key).
    pub async fn changed_elsewhere(&self) -> Result<(), DirectoryError> {
        self.reload().await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    Retired,
    NotFound,
    /// The tenant's newest key signs; rotate before retiring it.
    Current,
}

async fn read_version(db: &Database) -> Result<i64, sqlx::Error> {
    on_pool!(db, pool => sqlx::query_scalar("SELECT version FROM directory_version WHERE id = 1").fetch_one(pool).await)
}

/// Refuses a master key other than the one the database's secrets were
/// sealed with; the first process to start seals the check value.
async fn check_master_key(db: &Database, master: &MasterKey) -> Result<(), DirectoryError> {
    let candidate = master.seal(MASTER_CHECK_TEXT, MASTER_CHECK_NAME);
    let stored = db.shared_secret(MASTER_CHECK_NAME, &candidate).await.map_err(DirectoryError::MasterCheck)?;
    match master.open(&stored, MASTER_CHECK_NAME) {
        Ok(text) if text == MASTER_CHECK_TEXT => Ok(()),
        _ => Err(DirectoryError::WrongMasterKey),
    }
}

/// Whether the database already has secrets sealed by some master key.
pub async fn has_sealed_secrets(db: &Database) -> Result<bool, sqlx::Error> {
    const SQL: &str = "SELECT COUNT(*) FROM server_secrets WHERE name = $1";
    let count: i64 = on_pool!(db, pool => sqlx::query_scalar(SQL).bind(MASTER_CHECK_NAME).fetch_one(pool).await)?;
    Ok(count > 0)
}

/// The owner's newest unretired key, opened.
async fn load_current(
    db: &Database,
    master: &MasterKey,
    tenant: Option<&str>,
) -> Result<Option<ActiveKey>, DirectoryError> {
    let sql = match tenant {
        Some(_) => format!(
            "{KEY_COLUMNS} WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1"
        ),
        None => format!(
            "{KEY_COLUMNS} WHERE tenant_id IS NULL AND retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1"
        ),
    };
    let row: Option<KeyRow> = on_pool!(db, pool => {
        let query = sqlx::query_as(&sql);
        let query = match tenant { Some(t) => query.bind(t), None => query };
        query.fetch_optional(pool).await
    })?;
    match row {
        Some((kid, ..)) => Ok(Some(open_key(db, master, &kid).await?)),
        None => Ok(None),
    }
}

async fn open_key(db: &Database, master: &MasterKey, kid: &str) -> Result<ActiveKey, DirectoryError> {
    let sealed: String = on_pool!(db, pool =>
        sqlx::query_scalar("SELECT private_key FROM signing_keys WHERE kid = $1").bind(kid).fetch_one(pool).await)?;
    let sealed_error = || DirectoryError::Sealed { kid: kid.to_owned() };
    let bytes = master.open(&sealed, kid).map_err(|_| sealed_error())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| sealed_error())?;
    Ok(ActiveKey { kid: kid.to_owned(), key: SigningKey::from_bytes(&bytes) })
}

/// Makes, seals and stores a new key for the tenant (the platform: None).
async fn insert_key(db: &Database, master: &MasterKey, tenant: Option<&str>) -> Result<ActiveKey, DirectoryError> {
    const SQL: &str = "INSERT INTO signing_keys (kid, tenant_id, algorithm, public_key, private_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut OsRng, &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let x = jws::public_x(&key);
    let kid = jws::thumbprint(&x);
    let sealed = master.seal(key.as_bytes(), &kid);
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(SQL).bind(&kid).bind(tenant).bind(ALGORITHM).bind(&x).bind(&sealed).bind(now())
            .execute(&mut *tx).await?;
        sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(ActiveKey { kid, key })
}

/// Every unretired key of every owner opens with this master key; run at
/// start-up so a wrong key stops the server before it answers anything.
pub async fn check_all_keys_open(db: &Database, master: &MasterKey) -> Result<usize, DirectoryError> {
    let rows: Vec<(String, String)> = on_pool!(db, pool =>
        sqlx::query_as("SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL").fetch_all(pool).await)?;
    for (kid, sealed) in &rows {
        master.open(sealed, kid).map_err(|_| DirectoryError::Sealed { kid: kid.clone() })?;
    }
    Ok(rows.len())
}
