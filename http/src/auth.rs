//! Who is calling: API keys in `Authorization: Bearer` or `X-API-Key`,
//! resolved to a [`Caller`] with a role, and the access rules of seed 000.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use keyledger_app::secret::{digests_match, sha256_hex};
use keyledger_app::signing::Directory;
use keyledger_app::system_keys::{looks_like_system_key, SystemKeyOwner, SystemKeyStore};
use keyledger_app::tenancy::{StoredKey, TenancyStore};

pub use keyledger_app::access::Caller;
pub use keyledger_app::tenancy::{Role, KEY_PREFIX, OPERATOR_PREFIX};

/// Resolves presented keys to callers.
///
/// Keys found are kept in memory, so a client key on the validate hot path
/// costs no database round trip. The cache is dropped whenever the
/// directory's version moves (a key revoked by this process moves it at
/// once; one revoked by another process within the directory's poll, about
/// a second).
#[derive(Clone)]
pub struct Authenticator {
    operator_token_hash: Arc<str>,
    tenancy: TenancyStore,
    /// Cached like the API keys: issuing a system key moves the
    /// directory's version, so a replaced one stops working at once here
    /// and within the directory's poll (about a second) elsewhere.
    system_keys: SystemKeyStore,
    directory: Arc<Directory>,
    cache: Arc<RwLock<KeyCache>>,
}

#[derive(Default)]
struct KeyCache {
    version: i64,
    keys: HashMap<String, StoredKey>,
    /// System keys found, by the SHA-256 of the key.
    system: HashMap<String, SystemKeyOwner>,
}

/// Bounds the cache; past it, it starts over.
const MAX_CACHED_KEYS: usize = 100_000;

impl Authenticator {
    pub fn new(
        operator_token: &str,
        tenancy: TenancyStore,
        system_keys: SystemKeyStore,
        directory: Arc<Directory>,
    ) -> Self {
        let operator_token_hash = sha256_hex(operator_token).into();
        Self { operator_token_hash, tenancy, system_keys, directory, cache: Arc::default() }
    }

    async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, ApiError> {
        let version = self.directory.version();
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if cache.version == version {
                if let Some(key) = cache.keys.get(id) {
                    return Ok(Some(key.clone()));
                }
            }
        }
        let found = self.tenancy.find_key(id).await.map_err(ApiError::internal)?;
        if let Some(key) = &found {
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            if cache.version != version || cache.keys.len() >= MAX_CACHED_KEYS {
                *cache = KeyCache { version, ..KeyCache::default() };
            }
            cache.keys.insert(id.to_owned(), key.clone());
        }
        Ok(found)
    }

    async fn find_system_key(&self, presented: &str) -> Result<Option<SystemKeyOwner>, ApiError> {
        let version = self.directory.version();
        let hash = sha256_hex(presented);
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if cache.version == version {
                if let Some(owner) = cache.system.get(&hash) {
                    return Ok(Some(owner.clone()));
                }
            }
        }
        let found = self.system_keys.find(presented).await.map_err(ApiError::internal)?;
        if let Some(owner) = &found {
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            if cache.version != version || cache.system.len() >= MAX_CACHED_KEYS {
                *cache = KeyCache { version, ..KeyCache::default() };
            }
            cache.system.insert(hash, owner.clone());
        }
        Ok(found)
    }

    /// Whether `presented` is the operator token.
    pub fn is_operator_token(&self, presented: &str) -> bool {
        digests_match(&sha256_hex(presented), &self.operator_token_hash)
    }

    /// A fingerprint of the operator token, for what must end when it
    /// changes (the panel's operator sessions); it does not reveal the
    /// token, nor its hash.
    pub fn operator_fingerprint(&self) -> String {
        sha256_hex(&format!("panel-operator-session:{}", self.operator_token_hash))[..32].to_owned()
    }

    pub async fn authenticate(&self, presented: &str) -> Result<Caller, ApiError> {
        let invalid = || ApiError::unauthorized("Invalid or revoked API key");
        if let Some(rest) = presented.strip_prefix(KEY_PREFIX) {
            let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid());
            }
            let key = self.find_key(id).await?.ok_or_else(invalid)?;
            if key.revoked || !digests_match(&sha256_hex(secret), &key.secret_hash) {
                return Err(invalid());
            }
            return Ok(Caller {
                key_id: key.id,
                role: key.role,
                tenant_id: Some(key.tenant_id),
                user_id: Some(key.user_id),
            });
        }
        if looks_like_system_key(presented) {
            let owner = self.find_system_key(presented).await?.ok_or_else(invalid)?;
            return Ok(Caller {
                key_id: owner.key_id.clone(),
                role: Role::System,
                tenant_id: Some(owner.tenant_id),
                user_id: Some(owner.key_id),
            });
        }
        if digests_match(&sha256_hex(presented), &self.operator_token_hash) {
            return Ok(Caller::operator());
        }
        Err(invalid())
    }
}

/// The key from `Authorization: Bearer <key>` (scheme in any case) or
/// `X-API-Key: <key>`. An empty value in one header does not hide a key in
/// the other, but an `Authorization` header that is not a bearer token is
/// an error of its own, not a missing key, so a client that
/// writes it wrong (`Bearer<TAB>key`, `Basic …`) is told so.
fn presented_key(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let malformed = || {
        ApiError::unauthorized("Malformed Authorization header: expected `Bearer <key>`")
            .with_code("malformed_authorization")
    };
    let bearer = match parts.headers.get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| malformed())?.trim();
            if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
                // `Bearer ` with nothing after it, as a client templating an
                // empty token sends: no key here, but maybe in `X-API-Key`.
                return Ok(parts
                    .headers
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|k| !k.is_empty()));
            }
            let (scheme, key) = value.trim().split_once(' ').ok_or_else(malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer")
                || key.trim().is_empty()
                || key.trim().contains(char::is_whitespace)
            {
                return Err(malformed());
            }
            Some(key.trim())
        }
    };
    let api_key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    Ok([bearer, api_key].into_iter().flatten().find(|key| !key.is_empty()))
}

/// An authenticated caller of a management endpoint. Client keys are
/// refused here: they ship inside software, where anyone can read them.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = presented_key(parts)?.ok_or_else(|| {
            ApiError::unauthorized("Missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        })?;
        let caller = state.auth.authenticate(key).await?;
        if caller.role == Role::Client {
            return Err(ApiError::forbidden("A client key may call the client endpoints only"));
        }
        if caller.role == Role::System {
            return Err(ApiError::forbidden(
                "A system key may call the V2 License Server endpoints only (/api/license/…); use a tenant admin key here",
            ));
        }
        Ok(caller)
    }
}

/// The caller of a client endpoint: anonymous, or any valid key, which
/// confines the call to the key's tenant.
pub struct ClientCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for ClientCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match presented_key(parts)? {
            None => Ok(ClientCaller(None)),
            Some(key) => state.auth.authenticate(key).await.map(|caller| ClientCaller(Some(caller))),
        }
    }
}
