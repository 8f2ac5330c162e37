//! Tenants and their API keys, in plain tables: they are configuration of
//! who may act, not license history, so they are not event-sourced.

use chrono::{SecondsFormat, Utc};
use keyledger_eventlog::{on_pool, Database};
use uuid::Uuid;

use crate::secret::{random_id, random_token, sha256_hex};

/// Every tenant key starts with this, so keys are recognisable in logs and
/// by secret scanners.
pub const KEY_PREFIX: &str = "klk_";
/// The prefix of generated operator tokens.
pub const OPERATOR_PREFIX: &str = "klo_";

/// Marks the cached directory of keys and tenant settings stale in every
/// process; run in the same transaction as the change it announces.
pub const BUMP_VERSION: &str = "UPDATE directory_version SET version = version + 1 WHERE id = 1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Platform-wide: seed 000's ProviderAdmin. Not a member of any tenant.
    Operator,
    /// Manages one tenant: its keys and all its licenses.
    Admin,
    /// Owns the licenses it generates.
    User,
    /// A publishable key shipped inside a vendor's software: the client
    /// endpoints only, for its tenant's licenses only.
    Client,
    /// The tenant's system key (`AF-YYYY-…`): the V2 License Server
    /// dialect's credential, an administrator of its tenant there and
    /// nowhere else ([`crate::system_keys`]).
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::User => "user",
            Role::Client => "client",
            Role::System => "system",
        }
    }

    /// Tenant key roles as stored; the operator is never stored.
    pub fn from_stored(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "client" => Some(Role::Client),
            _ => None,
        }
    }
}

const KEY_ID_LEN: usize = 12;
const KEY_SECRET_LEN: usize = 40;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub name: String,
}

/// A key as issued: the only time its full text exists outside the
/// caller's hands.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
    pub role: Role,
    pub user_id: String,
    pub name: String,
    pub tenant_id: String,
}

/// A key as stored.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub role: Role,
    pub name: String,
    pub secret_hash: String,
    pub created_at: String,
    pub revoked: bool,
}

/// What became of a request to revoke a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    NotFound,
    LastAdmin,
}

/// A new tenant's usage threshold, in percent of a license's seats.
pub const DEFAULT_USAGE_THRESHOLD: u32 = 80;

#[derive(Debug, Clone)]
pub struct TenancyStore {
    db: Database,
}

const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)";
const INSERT_KEY: &str = "INSERT INTO api_keys (id, tenant_id, user_id, role, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const KEY_COLUMNS: &str =
    "SELECT id, tenant_id, user_id, role, name, secret_hash, created_at, revoked_at FROM api_keys";

type KeyRow = (String, String, String, String, String, String, String, Option<String>);

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Makes a key for a new user of `tenant_id`: `klk_<id>_<secret>`. The id
/// finds the row; only the secret's hash is kept.
fn new_key(tenant_id: &str, role: Role, name: &str) -> (IssuedKey, String) {
    let id = random_id(KEY_ID_LEN);
    let secret = random_token(KEY_SECRET_LEN);
    let issued = IssuedKey {
        key: format!("{KEY_PREFIX}{id}_{secret}"),
        id,
        role,
        user_id: Uuid::new_v4().to_string(),
        name: name.to_owned(),
        tenant_id: tenant_id.to_owned(),
    };
    (issued, sha256_hex(&secret))
}

impl TenancyStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a tenant and its first admin key in one transaction, so a
    /// tenant never exists without a way in.
    pub async fn create_tenant(&self, name: &str) -> Result<(Tenant, IssuedKey), sqlx::Error> {
        let tenant = Tenant { id: Uuid::new_v4().to_string(), name: name.to_owned() };
        let (key, secret_hash) = new_key(&tenant.id, Role::Admin, "initial admin key");
        let created_at = now();
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT_TENANT)
                .bind(&tenant.id)
                .bind(&tenant.name)
                .bind(&created_at)
                .execute(&mut *tx)
                .await?;
            insert_key(&key, &secret_hash, &created_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok((tenant, key))
    }

    /// Every tenant with when it was created, oldest first.
    pub async fn tenants(&self) -> Result<Vec<(Tenant, String)>, sqlx::Error> {
        const SQL: &str = "SELECT id, name, created_at FROM tenants ORDER BY created_at, id";
        let rows: Vec<(String, String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(id, name, created_at)| (Tenant { id, name }, created_at)).collect())
    }

    /// The tenant with this id, if there is one.
    pub async fn tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, sqlx::Error> {
        const SQL: &str = "SELECT id, name FROM tenants WHERE id = $1";
        let row: Option<(String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(tenant_id).fetch_optional(pool).await)?;
        Ok(row.map(|(id, name)| Tenant { id, name }))
    }

    pub async fn create_key(&self, tenant_id: &str, role: Role, name: &str) -> Result<IssuedKey, sqlx::Error> {
        let (key, secret_hash) = new_key(tenant_id, role, name);
        let created_at = now();
        on_pool!(&self.db, pool => insert_key(&key, &secret_hash, &created_at).execute(pool).await.map(drop))?;
        Ok(key)
    }

    pub async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, sqlx::Error> {
        let sql = format!("{KEY_COLUMNS} WHERE id = $1");
        let row: Option<KeyRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)?;
        Ok(row.and_then(stored_key))
    }

    /// The tenant's keys that still work, oldest first.
    pub async fn list_keys(&self, tenant_id: &str) -> Result<Vec<StoredKey>, sqlx::Error> {
        let sql = format!("{KEY_COLUMNS} WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, id");
        let rows: Vec<KeyRow> = on_pool!(&self.db, pool => sqlx::query_as(&sql).bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows.into_iter().filter_map(stored_key).collect())
    }

    pub async fn tenant_exists(&self, tenant_id: &str) -> Result<bool, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) FROM tenants WHERE id = $1";
        let count: i64 = on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(tenant_id).fetch_one(pool).await)?;
        Ok(count > 0)
    }

    /// The share of a license's seats, in percent, at which the tenant's
    /// usage threshold webhook is sent; `None` for no such tenant.
    pub async fn usage_threshold(&self, tenant_id: &str) -> Result<Option<u32>, sqlx::Error> {
        const SQL: &str = "SELECT usage_threshold_percent FROM tenants WHERE id = $1";
        let percent: Option<i64> =
            on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(tenant_id).fetch_optional(pool).await)?;
        Ok(percent.map(|p| p.clamp(1, 100) as u32))
    }

    /// Sets the usage threshold; the caller checks it is 1 to 100.
    pub async fn set_usage_threshold(&self, tenant_id: &str, percent: u32) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE tenants SET usage_threshold_percent = $1 WHERE id = $2";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(i64::from(percent)).bind(tenant_id).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Revokes a live key of `tenant_id`, unless it is the tenant's last
    /// live admin key: a tenant without one could never be managed again.
    ///
    /// The count of admin keys and the revocation must be one decision.
    /// SQLite runs the statement under its single write lock. PostgreSQL's
    /// READ COMMITTED lets two revocations each count the other's key as
    /// live, so there the tenant's row is locked first and revocations of
    /// one tenant's keys take turns, across any number of processes.
    pub async fn revoke_key(&self, tenant_id: &str, id: &str) -> Result<Revocation, sqlx::Error> {
        const SQL: &str = "
UPDATE api_keys SET revoked_at = $1
 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL
   AND (role <> 'admin'
        OR (SELECT COUNT(*) FROM api_keys WHERE tenant_id = $3 AND role = 'admin' AND revoked_at IS NULL) > 1)";
        const LOCK_TENANT: &str = "SELECT id FROM tenants WHERE id = $1 FOR UPDATE";
        let revoked_at = now();
        let args = [revoked_at.as_str(), id, tenant_id];
        let affected = match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(LOCK_TENANT).bind(tenant_id).execute(&mut *tx).await?;
                let affected = bind_all(sqlx::query(SQL), args).execute(&mut *tx).await?.rows_affected();
                // Every process drops its cache of keys: in the same
                // transaction, so a revocation can't land without it.
                sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
                tx.commit().await?;
                affected
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let affected = bind_all(sqlx::query(SQL), args).execute(&mut *tx).await?.rows_affected();
                sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
                tx.commit().await?;
                affected
            }
        };
        if affected == 1 {
            return Ok(Revocation::Revoked);
        }
        Ok(match self.find_key(id).await? {
            Some(key) if key.tenant_id == tenant_id && !key.revoked => Revocation::LastAdmin,
            _ => Revocation::NotFound,
        })
    }
}

fn bind_all<'q, DB: sqlx::Database, const N: usize>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    args: [&'q str; N],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for arg in args {
        query = query.bind(arg);
    }
    query
}

fn insert_key<'q, DB: sqlx::Database>(
    key: &'q IssuedKey,
    secret_hash: &'q str,
    created_at: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(INSERT_KEY)
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(key.user_id.as_str())
        .bind(key.role.as_str())
        .bind(key.name.as_str())
        .bind(secret_hash)
        .bind(created_at)
}

fn stored_key((id, tenant_id, user_id, role, name, secret_hash, created_at, revoked_at): KeyRow) -> Option<StoredKey> {
    let role = Role::from_stored(&role)?;
    Some(StoredKey { id, tenant_id, user_id, role, name, secret_hash, created_at, revoked: revoked_at.is_some() })
}

/// Revokes the tenant's API key `key_id`, and has this process drop its
/// cached keys at once (the others drop them at their next poll of the
/// directory's version, which the revocation bumped).
pub async fn revoke_api_key(
    tenancy: &TenancyStore,
    directory: &crate::signing::Directory,
    tenant_id: &str,
    key_id: &str,
) -> Result<Revocation, sqlx::Error> {
    let revocation = tenancy.revoke_key(tenant_id, key_id).await?;
    if revocation == Revocation::Revoked {
        if let Err(error) = directory.changed_elsewhere().await {
            let error = crate::client::error_chain(&error);
            tracing::warn!(%error, "revoked key: this process's cache reloads at its next poll");
        }
        tracing::info!(tenant_id, key_id, "API key revoked");
    }
    Ok(revocation)
}
