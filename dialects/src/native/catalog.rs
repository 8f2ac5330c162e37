//! What the catalog's routes (products, customers) share: finding a
//! tenant's record by id, paging, its history and its state at an instant,
//! each answered the same way for every kind of record.

use chrono::{DateTime, Utc};
use keyledger_app::aggregates::{CatalogAggregate, CatalogError, CatalogStore, Stored};
use serde_json::{json, Value};
use uuid::Uuid;

use super::audit::{integer_param, DEFAULT_PAGE, MAX_PAGE};
use keyledger_http::error::{ApiError, ApiResult};

/// What the routes say about one kind of record.
pub struct Kind {
    /// The id's name on the wire: `productId`.
    pub id_field: &'static str,
    /// Its not-found answer.
    pub not_found: fn() -> ApiError,
}

impl Kind {
    /// A record id from a path or a body: a UUID, or a 4xx naming `field`.
    pub fn parse_id(&self, raw: &str, field: &str) -> ApiResult<String> {
        Uuid::parse_str(raw)
            .map(|id| id.to_string())
            .map_err(|_| ApiError::field(field, format!("{field} must be a UUID (the id of a {})", self.noun())))
    }

    fn noun(&self) -> &'static str {
        self.id_field.trim_end_matches("Id")
    }

    /// The tenant's record `raw_id`, deleted ones too when `with_deleted`
    /// (their history stays readable); another tenant's does not exist.
    pub async fn tenant_record<A: CatalogAggregate>(
        &self,
        store: &CatalogStore<A>,
        tenant_id: &str,
        raw_id: &str,
        with_deleted: bool,
    ) -> ApiResult<Stored<A>>
    where
        ApiError: From<CatalogError<A::Error>>,
    {
        let id = self.parse_id(raw_id, self.id_field)?;
        match store.get(&id).await? {
            Some(stored) if stored.record.tenant_id() == tenant_id && (with_deleted || stored.record.exists()) => {
                Ok(stored)
            }
            _ => Err((self.not_found)()),
        }
    }

    /// `?after=&limit=` of a list: the record id to continue after and
    /// the page size.
    pub fn page_params(&self, params: &std::collections::HashMap<String, String>) -> ApiResult<(Option<String>, i64)> {
        let limit = integer_param(params, "limit", DEFAULT_PAGE, (1, MAX_PAGE))?;
        let after = params.get("after").map(|raw| self.parse_id(raw, "after")).transpose()?;
        Ok((after, limit))
    }

    /// `GET …/{id}/events`: the record's history, shaped like a license's.
    pub async fn history<A: CatalogAggregate>(
        &self,
        store: &CatalogStore<A>,
        tenant_id: &str,
        raw_id: &str,
        params: &std::collections::HashMap<String, String>,
    ) -> ApiResult<Value>
    where
        ApiError: From<CatalogError<A::Error>>,
    {
        let after = integer_param(params, "after", 0, (0, i64::MAX))?;
        let limit = integer_param(params, "limit", DEFAULT_PAGE, (1, MAX_PAGE))?;
        let stored = self.tenant_record(store, tenant_id, raw_id, true).await?;
        let id = stored.record.id();
        let events = store.history(id, after, limit).await?;
        let next_after =
            (events.len() as i64 == limit).then(|| events.last().and_then(|e| e["position"].as_i64())).flatten();
        Ok(json!({ self.id_field: id, "events": events, "nextAfter": next_after }))
    }

    /// `GET …/{id}/state?at=`: the record as it was at that instant,
    /// folded from its events up to then, rendered by `render`.
    pub async fn state_at<A: CatalogAggregate>(
        &self,
        store: &CatalogStore<A>,
        tenant_id: &str,
        raw_id: &str,
        params: &std::collections::HashMap<String, String>,
        render: impl FnOnce(&A, i64) -> Value,
    ) -> ApiResult<Value>
    where
        ApiError: From<CatalogError<A::Error>>,
    {
        let raw_at = params
            .get("at")
            .ok_or_else(|| ApiError::field("at", format!("at is required: it {}", keyledger_http::dates::EXPECTED)))?;
        let at: DateTime<Utc> = keyledger_http::dates::parse_instant(raw_at)
            .ok_or_else(|| ApiError::field("at", format!("at {}", keyledger_http::dates::EXPECTED)))?;
        let stored = self.tenant_record(store, tenant_id, raw_id, true).await?;
        match store.state_at(stored.record.id(), at).await? {
            Some((record, version)) => {
                Ok(json!({ "at": raw_at, "version": version, self.noun(): render(&record, version) }))
            }
            None => Err(ApiError::not_found(format!("The {} did not exist yet at {raw_at}", self.noun()))
                .with_code("not_yet_created")),
        }
    }
}
