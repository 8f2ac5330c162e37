//! The admin panel's people and sessions: a tenant admin invites staff
//! (a one-time link), each sets a password (kept as an argon2id hash) and
//! has a role, `admin` or `viewer`; a signed-in person holds a session
//! kept in the log's database, so any process serves it. Nothing here is
//! kept in clear: invitation and session tokens as their SHA-256, the
//! password as its argon2id hash.
//!
//! The operator signs in too, with the operator token, to manage tenants.
//! An operator's session names no staff member: its `staff_id` is
//! `operator:` and a fingerprint of the token it was opened with, so a
//! server started with another token opens none of the old sessions.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use keyledger_eventlog::{on_pool, Database};

use crate::master::MasterKey;
use crate::secret::{digests_match, random_token, sha256_hex};
use crate::totp;

/// How an operator session's `staff_id` begins.
pub const OPERATOR_PREFIX: &str = "operator:";
/// How long an invitation link may be used.
pub const INVITATION_TTL: Duration = Duration::days(7);
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (argon2 hashes any length; this bounds the
/// work a request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// How often a session's last use is written, at most.
const TOUCH_EVERY: Duration = Duration::minutes(1);

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("panel staff: a query failed")]
    Database(#[from] sqlx::Error),
    #[error("panel staff: a password hash could not be made or read: {0}")]
    Hash(String),
}

/// What a staff member may do in the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffRole {
    /// Sees and changes everything of the tenant.
    Admin,
    /// Sees everything of the tenant and changes nothing.
    Viewer,
    /// The installation's operator, signed in with the operator token:
    /// manages tenants, and runs any tenant it opens as its admin would.
    /// Never a staff member's role ([`StaffRole::parse`] does not read it).
    Operator,
}

impl StaffRole {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }
}

/// A staff member as listed.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: StaffRole,
    /// False until the invitation is accepted.
    pub active: bool,
    pub created_at: String,
}

/// A new invitation: the staff member, and the one-time token of its link
/// (shown once; only its hash is kept).
pub struct Invitation {
    pub staff: Staff,
    pub token: String,
}

/// A signed-in person's session, as a request finds it.
#[derive(Debug, Clone)]
pub struct Session {
    pub staff_id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: StaffRole,
    /// The form token every change must carry.
    pub csrf: String,
}

/// A session just begun: the cookie's token (kept only as its hash) and
/// the session.
pub struct SignedIn {
    pub token: String,
    pub session: Session,
}

#[derive(Clone)]
pub struct StaffStore {
    db: Database,
    /// Seals the TOTP secrets.
    master: MasterKey,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_stamp(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|at| at.with_timezone(&Utc))
}

/// An email as kept and compared: trimmed, lower case.
pub fn normal_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_ascii_lowercase();
    let (local, domain) = email.split_once('@')?;
    let fine = !local.is_empty()
        && domain.contains('.')
        && email.len() <= 254
        && email.chars().all(|c| c.is_ascii_graphic() && c != '<' && c != '>' && c != '"');
    fine.then_some(email)
}

/// Why a password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Some(format!("a password has at least {MIN_PASSWORD_CHARS} characters"))
    } else if chars > MAX_PASSWORD_CHARS {
        Some(format!("a password has at most {MAX_PASSWORD_CHARS} characters"))
    } else {
        None
    }
}

fn hash_password(password: &str) -> Result<String, StaffError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StaffError::Hash(e.to_string()))
}

/// A hash made once, checked against when the email is unknown, so that
/// an unknown email costs a sign-in the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token(32)).unwrap_or_default())
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

type StaffRow = (String, String, String, String, Option<String>, String);

fn staff_of(row: StaffRow) -> Option<Staff> {
    let (id, tenant_id, email, role, password_hash, created_at) = row;
    Some(Staff { id, tenant_id, email, role: StaffRole::parse(&role)?, active: password_hash.is_some(), created_at })
}

impl StaffStore {
    pub fn new(db: Database, master: MasterKey) -> Self {
        Self { db, master }
    }

    /// Invites `email` to the tenant's panel with `role`: a new staff
    /// member without a password, and the token of a link valid for
    /// [`INVITATION_TTL`]. `None` when the email is taken.
    pub async fn invite(
        &self,
        tenant_id: &str,
        email: &str,
        role: StaffRole,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>, StaffError> {
        const SQL: &str = "INSERT INTO panel_staff (staff_id, tenant_id, email, role, invitation_hash, \
                           invitation_expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                           ON CONFLICT (email) DO NOTHING";
        let id = uuid::Uuid::new_v4().to_string();
        let token = random_token(40);
        let inserted = on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(&id)
            .bind(tenant_id)
            .bind(email)
            .bind(role.as_str())
            .bind(sha256_hex(&token))
            .bind(stamp(now + INVITATION_TTL))
            .bind(stamp(now))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        if inserted == 0 {
            return Ok(None);
        }
        let staff = Staff {
            id,
            tenant_id: tenant_id.to_owned(),
            email: email.to_owned(),
            role,
            active: false,
            created_at: stamp(now),
        };
        Ok(Some(Invitation { staff, token }))
    }

    /// The staff member an unused, unexpired invitation token is for.
    pub async fn invited(&self, token: &str, now: DateTime<Utc>) -> Result<Option<Staff>, StaffError> {
        const SQL: &str = "SELECT staff_id, tenant_id, email, role, password_hash, created_at, \
                           invitation_expires_at FROM panel_staff WHERE invitation_hash = $1";
        type Row = (String, String, String, String, Option<String>, String, Option<String>);
        let row: Option<Row> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(sha256_hex(token)).fetch_optional(pool).await)?;
        let Some((id, tenant_id, email, role, password_hash, created_at, expires)) = row else { return Ok(None) };
        if expires.as_deref().and_then(parse_stamp).is_none_or(|expires| expires <= now) {
            return Ok(None);
        }
        Ok(staff_of((id, tenant_id, email, role, password_hash, created_at)))
    }

    /// Accepts an invitation: sets the password and spends the token.
    /// False when the token is unknown, spent or expired.
    pub async fn accept(&self, token: &str, password: &str, now: DateTime<Utc>) -> Result<bool, StaffError> {
        const SQL: &str = "UPDATE panel_staff SET password_hash = $1, invitation_hash = NULL, \
                           invitation_expires_at = NULL WHERE invitation_hash = $2 AND invitation_expires_at > $3";
        let hash = hash_password(password)?;
        let updated = on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(&hash)
            .bind(sha256_hex(token))
            .bind(stamp(now))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(updated == 1)
    }

    /// The tenant's staff, by email.
    pub async fn of_tenant(&self, tenant_id: &str) -> Result<Vec<Staff>, StaffError> {
        const SQL: &str = "SELECT staff_id, tenant_id, email, role, password_hash, created_at FROM panel_staff \
                           WHERE tenant_id = $1 ORDER BY email";
        let rows: Vec<StaffRow> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows.into_iter().filter_map(staff_of).collect())
    }

    /// Removes a staff member of the tenant and ends their sessions. False
    /// when the tenant has no such member.
    pub async fn remove(&self, tenant_id: &str, staff_id: &str) -> Result<bool, StaffError> {
        const SESSIONS: &str = "DELETE FROM panel_sessions WHERE staff_id = $1 AND tenant_id = $2";
        const STAFF: &str = "DELETE FROM panel_staff WHERE staff_id = $1 AND tenant_id = $2";
        let removed = on_pool!(&self.db, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(SESSIONS).bind(staff_id).bind(tenant_id).execute(&mut *tx).await?;
            let removed = sqlx::query(STAFF).bind(staff_id).bind(tenant_id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(removed)
        }.await)?;
        Ok(removed == 1)
    }

    /// Signs in with an email and a password: a new session, or `None`
    /// when they do not match an active staff member. Takes the same time
    /// either way.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SignedIn>, StaffError> {
        const SQL: &str = "SELECT staff_id, tenant_id, email, role, password_hash, created_at, totp_secret, \
                           totp_last_step FROM panel_staff WHERE email = $1";
        type Row = (String, String, String, String, Option<String>, String, Option<String>, Option<i64>);
        let row: Option<Row> = on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(email).fetch_optional(pool).await)?;
        let (row, totp_secret, last_step) = match row {
            Some((id, tenant_id, email, role, hash, created_at, secret, last)) => {
                (Some((id, tenant_id, email, role, hash, created_at)), secret, last)
            }
            None => (None, None, None),
        };
        let hash = row.as_ref().and_then(|row| row.4.clone());
        let password = password.to_owned();
        let checked = hash.clone().unwrap_or_else(|| decoy_hash().to_owned());
        // argon2 takes tens of milliseconds of CPU: off the async threads.
        let matches = tokio::task::spawn_blocking(move || password_matches(&password, &checked))
            .await
            .map_err(|e| StaffError::Hash(e.to_string()))?;
        let Some(staff) = row.and_then(staff_of).filter(|_| matches && hash.is_some()) else { return Ok(None) };
        if let Some(sealed) = totp_secret {
            if !self.take_code(&staff.id, &sealed, code, last_step, now).await? {
                return Ok(None);
            }
        }
        self.begin(&staff, now).await.map(Some)
    }

    /// Whether `code` is a good code of the sealed secret, not used
    /// before; it is marked used (one update that only a later step
    /// passes, so two requests can't both use it).
    async fn take_code(
        &self,
        staff_id: &str,
        sealed: &str,
        code: &str,
        last_step: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StaffError> {
        const USE: &str = "UPDATE panel_staff SET totp_last_step = $1 WHERE staff_id = $2 \
                           AND (totp_last_step IS NULL OR totp_last_step < $1)";
        let secret = self.master.open(sealed, &totp_context(staff_id)).map_err(|e| StaffError::Hash(e.to_string()))?;
        let Some(step) = totp::verify(&secret, code, now, last_step) else { return Ok(false) };
        let used = on_pool!(&self.db, pool => sqlx::query(USE).bind(step).bind(staff_id).execute(pool).await
            .map(|done| done.rows_affected()))?;
        Ok(used == 1)
    }

    /// Whether the staff member signs in with a code too.
    pub async fn totp_enabled(&self, staff_id: &str) -> Result<bool, StaffError> {
        const SQL: &str = "SELECT totp_secret FROM panel_staff WHERE staff_id = $1";
        let secret: Option<Option<String>> =
            on_pool!(&self.db, pool => sqlx::query_scalar(SQL).bind(staff_id).fetch_optional(pool).await)?;
        Ok(secret.flatten().is_some())
    }

    /// Begins setting TOTP up: a new secret, kept (sealed) as pending
    /// until a code from it is confirmed. Returns the secret, to show.
    pub async fn totp_begin(&self, staff_id: &str) -> Result<[u8; totp::SECRET_BYTES], StaffError> {
        const SQL: &str = "UPDATE panel_staff SET totp_pending = $1 WHERE staff_id = $2";
        let secret = totp::new_secret();
        let sealed = self.master.seal(&secret, &totp_context(staff_id));
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(&sealed).bind(staff_id).execute(pool).await.map(drop))?;
        Ok(secret)
    }

    /// Turns TOTP on when `code` is a good code of the pending secret.
    pub async fn totp_confirm(&self, staff_id: &str, code: &str, now: DateTime<Utc>) -> Result<bool, StaffError> {
        const PENDING: &str = "SELECT totp_pending FROM panel_staff WHERE staff_id = $1";
        const ENABLE: &str = "UPDATE panel_staff SET totp_secret = totp_pending, totp_pending = NULL, \
                              totp_last_step = $1 WHERE staff_id = $2 AND totp_pending = $3";
        let pending: Option<Option<String>> =
            on_pool!(&self.db, pool => sqlx::query_scalar(PENDING).bind(staff_id).fetch_optional(pool).await)?;
        let Some(sealed) = pending.flatten() else { return Ok(false) };
        let secret = self.master.open(&sealed, &totp_context(staff_id)).map_err(|e| StaffError::Hash(e.to_string()))?;
        let Some(step) = totp::verify(&secret, code, now, None) else { return Ok(false) };
        let enabled = on_pool!(&self.db, pool => sqlx::query(ENABLE).bind(step).bind(staff_id).bind(&sealed)
            .execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(enabled == 1)
    }

    /// Turns TOTP off when `code` is a good code of the current secret.
    pub async fn totp_disable(&self, staff_id: &str, code: &str, now: DateTime<Utc>) -> Result<bool, StaffError> {
        const SQL: &str = "SELECT totp_secret, totp_last_step FROM panel_staff WHERE staff_id = $1";
        const DISABLE: &str = "UPDATE panel_staff SET totp_secret = NULL, totp_pending = NULL, \
                               totp_last_step = NULL WHERE staff_id = $1";
        let row: Option<(Option<String>, Option<i64>)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(staff_id).fetch_optional(pool).await)?;
        let Some((Some(sealed), last_step)) = row else { return Ok(false) };
        if !self.take_code(staff_id, &sealed, code, last_step, now).await? {
            return Ok(false);
        }
        on_pool!(&self.db, pool => sqlx::query(DISABLE).bind(staff_id).execute(pool).await.map(drop))?;
        Ok(true)
    }

    /// A new session for `staff`, with its own cookie and form tokens.
    async fn begin(&self, staff: &Staff, now: DateTime<Utc>) -> Result<SignedIn, StaffError> {
        const SQL: &str = "INSERT INTO panel_sessions (session_hash, staff_id, tenant_id, csrf, created_at, \
                           last_seen_at) VALUES ($1, $2, $3, $4, $5, $5)";
        let token = random_token(43);
        let csrf = random_token(43);
        on_pool!(&self.db, pool => sqlx::query(SQL)
            .bind(sha256_hex(&token))
            .bind(&staff.id)
            .bind(&staff.tenant_id)
            .bind(&csrf)
            .bind(stamp(now))
            .execute(pool)
            .await
            .map(drop))?;
        let session = Session {
            staff_id: staff.id.clone(),
            tenant_id: staff.tenant_id.clone(),
            email: staff.email.clone(),
            role: staff.role,
            csrf,
        };
        Ok(SignedIn { token, session })
    }

    /// A new operator session, with `fingerprint` naming the operator
    /// token it was opened with, in no tenant yet.
    pub async fn begin_operator(&self, fingerprint: &str, now: DateTime<Utc>) -> Result<SignedIn, StaffError> {
        let operator = Staff {
            id: format!("{OPERATOR_PREFIX}{fingerprint}"),
            tenant_id: String::new(),
            email: "operator".to_owned(),
            role: StaffRole::Operator,
            active: true,
            created_at: stamp(now),
        };
        self.begin(&operator, now).await
    }

    /// Points an operator's session at a tenant (the pages then show it).
    pub async fn open_tenant(&self, token: &str, tenant_id: &str) -> Result<(), StaffError> {
        const SQL: &str =
            "UPDATE panel_sessions SET tenant_id = $1 WHERE session_hash = $2 AND staff_id LIKE 'operator:%'";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(tenant_id).bind(sha256_hex(token)).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// The session a cookie's token opens, if it was used within `idle`
    /// and began within `lifetime`; its last use is moved to `now`.
    pub async fn session(
        &self,
        token: &str,
        idle: Duration,
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StaffError> {
        const SQL: &str = "SELECT s.staff_id, s.tenant_id, COALESCE(p.email, 'operator'), \
                           COALESCE(p.role, 'operator'), s.csrf, s.created_at, s.last_seen_at \
                           FROM panel_sessions s LEFT JOIN panel_staff p ON p.staff_id = s.staff_id \
                           WHERE s.session_hash = $1 AND (p.password_hash IS NOT NULL OR s.staff_id LIKE 'operator:%')";
        const TOUCH: &str = "UPDATE panel_sessions SET last_seen_at = $1 WHERE session_hash = $2";
        type Row = (String, String, String, String, String, String, String);
        let hash = sha256_hex(token);
        let row: Option<Row> = on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(&hash).fetch_optional(pool).await)?;
        let Some((staff_id, tenant_id, email, role, csrf, created_at, last_seen_at)) = row else { return Ok(None) };
        let role = match role.as_str() {
            "operator" if staff_id.starts_with(OPERATOR_PREFIX) => Some(StaffRole::Operator),
            "operator" => None,
            other => StaffRole::parse(other),
        };
        let (Some(created), Some(seen), Some(role)) = (parse_stamp(&created_at), parse_stamp(&last_seen_at), role)
        else {
            return Ok(None);
        };
        if now - seen > idle || now - created > lifetime {
            self.end(token).await?;
            return Ok(None);
        }
        if now - seen > TOUCH_EVERY {
            on_pool!(&self.db, pool => sqlx::query(TOUCH).bind(stamp(now)).bind(&hash).execute(pool).await.map(drop))?;
        }
        Ok(Some(Session { staff_id, tenant_id, email, role, csrf }))
    }

    /// Ends the session a cookie's token opens (signing out).
    pub async fn end(&self, token: &str) -> Result<(), StaffError> {
        const SQL: &str = "DELETE FROM panel_sessions WHERE session_hash = $1";
        on_pool!(&self.db, pool => sqlx::query(SQL).bind(sha256_hex(token)).execute(pool).await.map(drop))?;
        Ok(())
    }
}

/// What a staff member's TOTP secret is sealed to: its row.
fn totp_context(staff_id: &str) -> String {
    format!("panel-totp:{staff_id}")
}

/// Whether a form's token is the session's.
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    digests_match(&session.csrf, given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_kept_trimmed_and_lower_case() {
        assert_eq!(normal_email("  Ana@Example.COM ").as_deref(), Some("ana@example.com"));
        assert_eq!(normal_email("no-at-sign.example.com"), None);
        assert_eq!(normal_email("a@localhost"), None);
        assert_eq!(normal_email("a b@example.com"), None);
    }

    #[test]
    fn a_password_is_checked_against_its_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse battery!", &hash));
        assert!(!password_matches("correct horse battery", "not a hash"));
        assert!(password_problem("short").is_some());
        assert!(password_problem("twelve chars").is_none());
    }
}
