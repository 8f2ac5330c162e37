//! Reading a JSON:API request document: its `data` resource object, the
//! attributes it may carry, and the resources it relates to, each fault
//! named by its JSON pointer.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::bad_field;
use keyledger_http::error::ApiError;

/// A request document: only `data` is read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct Document {
    #[schema(value_type = Object)]
    pub data: Option<Value>,
}

/// The resource object of a request, checked against the type it must
/// have and the attributes and relationships it may carry.
pub(super) struct Resource {
    attributes: Map<String, Value>,
    relationships: Map<String, Value>,
}

impl Resource {
    /// `data` as a resource of `kind` carrying only `attributes` and
    /// `relationships` of those named: anything else is refused rather
    /// than ignored, so nothing asked for is silently dropped.
    pub fn read(document: Document, kind: &str, attributes: &[&str], relationships: &[&str]) -> Result<Self, ApiError> {
        let data = document.data.ok_or_else(|| bad_field("/data", "data is required"))?;
        let Value::Object(mut data) = data else { return Err(bad_field("/data", "data must be a resource object")) };
        match data.get("type").and_then(Value::as_str) {
            Some(given) if given == kind || given == kind.trim_end_matches('s') => {}
            _ => return Err(bad_field("/data/type", format!("type must be \"{kind}\""))),
        }
        let mut member = |name: &str| -> Result<Map<String, Value>, ApiError> {
            match data.remove(name) {
                None | Some(Value::Null) => Ok(Map::new()),
                Some(Value::Object(map)) => Ok(map),
                Some(_) => Err(bad_field(&format!("/data/{name}"), format!("{name} must be an object"))),
            }
        };
        let resource = Self { attributes: member("attributes")?, relationships: member("relationships")? };
        if let Some(unknown) = resource.attributes.keys().find(|name| !attributes.contains(&name.as_str())) {
            return Err(bad_field(
                &format!("/data/attributes/{unknown}"),
                format!("{unknown} is not served here (this resource takes {})", listed(attributes)),
            ));
        }
        if let Some(unknown) = resource.relationships.keys().find(|name| !relationships.contains(&name.as_str())) {
            return Err(bad_field(
                &format!("/data/relationships/{unknown}"),
                format!("{unknown} is not served here (this resource relates to {})", listed(relationships)),
            ));
        }
        Ok(resource)
    }

    fn pointer(name: &str) -> String {
        format!("/data/attributes/{name}")
    }

    /// A text attribute; `null` counts as absent.
    pub fn text(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad_field(&Self::pointer(name), format!("{name} must be a string"))),
        }
    }

    /// An integer attribute within `min..=max`.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(raw) => match raw.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(bad_field(&Self::pointer(name), format!("{name} must be an integer from {min} to {max}"))),
            },
        }
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(bad_field(&Self::pointer(name), format!("{name} must be true or false"))),
        }
    }

    /// An RFC 3339 date-time attribute.
    pub fn instant(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|at| Some(at.with_timezone(&Utc)))
                .map_err(|_| bad_field(&Self::pointer(name), format!("{name} must be an RFC 3339 date-time"))),
        }
    }

    /// The id of the resource of `kind` a relationship names, if given.
    pub fn related(&self, name: &str, kind: &str) -> Result<Option<&str>, ApiError> {
        let pointer = format!("/data/relationships/{name}/data");
        let Some(relationship) = self.relationships.get(name) else { return Ok(None) };
        let data = relationship.get("data").unwrap_or(&Value::Null);
        if data.is_null() {
            return Ok(None);
        }
        match data.get("type").and_then(Value::as_str) {
            Some(given) if given == kind || given == kind.trim_end_matches('s') => {}
            _ => return Err(bad_field(&format!("{pointer}/type"), format!("type must be \"{kind}\""))),
        }
        data.get("id")
            .and_then(Value::as_str)
            .map(Some)
            .ok_or_else(|| bad_field(&format!("{pointer}/id"), "id must be a string"))
    }
}

fn listed(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A list's page from Keygen's query: `page[size]` (or `limit`), 1 to 100
/// (default 10), and `page[number]` from 1.
pub(super) fn page(query: &std::collections::HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let number = |name: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| bad_field(&format!("?{name}"), format!("{name} must be 1 to {max}"))),
        }
    };
    let size = number("page[size]", number("limit", 10, 100)?, 100)?;
    let page = number("page[number]", 1, 1_000_000)?;
    Ok((size, page))
}
