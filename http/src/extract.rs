//! Request extractors: JSON bodies whose errors name the field at fault,
//! and the per-request context that goes into every event's metadata.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// How long a request's body may take to arrive in full, set per request by
/// the server (`KEYLEDGER_BODY_READ_TIMEOUT_SECS`). A client that trickles
/// its body a byte at a time is answered 408 when it runs out.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub std::time::Duration);

impl Default for BodyReadTimeout {
    fn default() -> Self {
        Self(std::time::Duration::from_secs(30))
    }
}

/// A JSON object body, as the screen (`screen.rs`) let it through: read in
/// full, a JSON object or empty. An empty body reads as `{}`, so endpoints
/// whose fields all have defaults can be called with no body at all.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            ApiError::bad_request("unreadable_body", rejection.body_text()).with_status(rejection.status())
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        parse_json(bytes).map(JsonBody)
    }
}

/// Accepts an empty body, or a well-formed JSON object with no NUL in any
/// string or key. Anything else is refused even where serde would take it
/// (a struct from an array `[..]`).
pub fn check_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(()),
        Some(b'{') => {}
        Some(_) => return Err(ApiError::bad_request("invalid_body", "Request body must be a JSON object")),
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::bad_request("malformed_json", format!("Request body is not valid JSON: {error}")));
    }
    // A NUL can only reach a string through the escape `\u0000`; the
    // precise walk runs only when the escape's text is present at all.
    if bytes.windows(6).any(|w| w == b"\\u0000") {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(path) = nul_path(&value, String::new()) {
                let field = if path.is_empty() { "body".to_owned() } else { path };
                return Err(ApiError::field(&field, format!("{field} must not contain NUL characters")));
            }
        }
    }
    Ok(())
}

/// The path (as serde_path_to_error writes it) of the first string or key
/// holding a NUL.
fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_path(item, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_path(item, here)
            }
        }),
        _ => None,
    }
}

/// The one parameter of a path such as `/revoke/{licenseId}`, whose
/// rejection (bad percent-encoding, say) is a JSON error like any other.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

/// The two parameters of a path such as
/// `/webhooks/{id}/deliveries/{delivery_id}/redeliver`.
pub struct PathParams(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((first, second))| PathParams(first, second))
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

/// An integer query parameter `name` within `range`, or `default` when it
/// is absent; anything else is a 400 naming it.
pub fn bounded_integer(raw: Option<&str>, name: &str, default: i64, range: (i64, i64)) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    raw.parse::<i64>()
        .ok()
        .filter(|n| (range.0..=range.1).contains(n))
        .ok_or_else(|| ApiError::field(name, format!("{name} must be an integer from {} to {}", range.0, range.1)))
}

/// Deserialises `bytes`, reporting the path of the field that failed.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("malformed_json", format!("Request body is not valid JSON: {inner}"))
        } else if let Some(unknown) = UnknownField::read(&inner.to_string(), &path) {
            unknown.into_error()
        } else if path == "." {
            ApiError::bad_request("invalid_body", format!("Request body must be a JSON object: {inner}"))
        } else {
            ApiError::field(&path, format!("{path}: {}", strip_position(&inner.to_string())))
        }
    })
}

/// A body field the endpoint does not know (native bodies refuse them: a
/// misspelt or misplaced field would otherwise be dropped without a word).
struct UnknownField {
    /// Its path in the body, as `field` names it (`policy.overage`).
    path: String,
    /// The fields known where it was found.
    expected: Vec<String>,
    /// Where it was found (`policy`), empty at the top.
    parent: String,
    name: String,
}

/// Fields that live one level down in some body, by the object that holds
/// them: a client that sends one a level up is pointed at it.
const NESTED: [(&str, &[&str]); 2] = [
    ("policy", &["heartbeatDurationSecs", "resurrection", "transferLimit", "overage", "maxUsers"]),
    ("transferLimit", &["count", "periodSecs"]),
];

impl UnknownField {
    /// From serde's message (``unknown field `x`, expected one of `a`, `b` ``)
    /// and the path serde_path_to_error reports for it.
    fn read(message: &str, path: &str) -> Option<Self> {
        let rest = message.strip_prefix("unknown field `")?;
        let (name, rest) = rest.split_once('`')?;
        let expected = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        let parent = match path.rsplit_once('.') {
            Some((parent, last)) if last == name => parent.to_owned(),
            _ if path == "." || path == name => String::new(),
            _ => path.to_owned(),
        };
        let path = if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") };
        Some(Self { path, expected, parent, name: name.to_owned() })
    }

    /// The known name it most likely meant: one a typo away at the same
    /// level, or the same name one level down.
    fn suggestion(&self) -> Option<String> {
        let here =
            |field: &str| if self.parent.is_empty() { field.to_owned() } else { format!("{}.{field}", self.parent) };
        let close = self
            .expected
            .iter()
            .map(|known| (edit_distance(&self.name.to_ascii_lowercase(), &known.to_ascii_lowercase()), known))
            .filter(|(distance, known)| *distance <= 2.max(known.len() / 4))
            .min_by_key(|(distance, _)| *distance);
        if let Some((_, known)) = close {
            return Some(here(known));
        }
        NESTED
            .iter()
            .find(|(holder, fields)| self.expected.iter().any(|e| e == holder) && fields.contains(&self.name.as_str()))
            .map(|(holder, _)| here(&format!("{holder}.{}", self.name)))
    }

    fn into_error(self) -> ApiError {
        let mut message = format!("{} is not a field of this request.", self.path);
        if let Some(suggestion) = self.suggestion() {
            message.push_str(&format!(" Did you mean {suggestion}?"));
        }
        if !self.expected.is_empty() {
            message.push_str(&format!(" Known fields here: {}", self.expected.join(", ")));
        }
        ApiError::field(&self.path, message).with_code("unknown_field")
    }
}

/// Levenshtein distance, for names of a few dozen characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// serde_json appends " at line 1 column 17"; the field name says more.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(head, _)| head)
}

/// Who sent this request and as which request: recorded with every event.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The dialect the request speaks, recorded with its events.
    pub api: &'static str,
}

impl RequestContext {
    /// Where the request came from, as event metadata records it.
    pub fn origin(&self) -> keyledger_app::metadata::Origin<'_> {
        keyledger_app::metadata::Origin {
            request_id: &self.request_id,
            client_ip: self.client_ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            api: self.api,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or((StatusCode::INTERNAL_SERVER_ERROR, "request context middleware is not installed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Outer {
        license_type: Option<i64>,
        policy: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Inner {
        heartbeat_duration_secs: Option<i64>,
        overage: Option<String>,
    }

    fn refusal(body: &str) -> ApiError {
        parse_json::<Outer>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn an_unknown_field_is_named_with_the_nearest_known_one() {
        let error = refusal(r#"{"licenceType": 1}"#);
        assert_eq!((error.code, error.field.as_deref()), ("unknown_field", Some("licenceType")));
        assert!(error.message.contains("Did you mean licenseType?"), "{}", error.message);

        let error = refusal(r#"{"heartbeatDurationSecs": 60}"#);
        assert_eq!(error.field.as_deref(), Some("heartbeatDurationSecs"));
        assert!(error.message.contains("Did you mean policy.heartbeatDurationSecs?"), "{}", error.message);

        let error = refusal(r#"{"policy": {"overages": "2"}}"#);
        assert_eq!(error.field.as_deref(), Some("policy.overages"));
        assert!(error.message.contains("Did you mean policy.overage?"), "{}", error.message);

        let error = refusal(r#"{"colour": "blue"}"#);
        assert_eq!(error.field.as_deref(), Some("colour"));
        assert!(!error.message.contains("Did you mean"), "{}", error.message);
    }
}
