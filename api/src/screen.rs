//! Rules every request meets before any handler sees it, so that no route
//! can forget them:
//!
//! - a request with a body says it is JSON (`415` otherwise). A browser
//!   can post `text/plain` or a form to any site without asking first;
//!   insisting on JSON makes a cross-site post need a CORS preflight,
//!   which keyledger never grants. A request without a body needs no type;
//! - the body arrives within its deadline (`408`) and its size limit
//!   (`413`), and is a JSON object with no NUL in any string (`400`),
//!   whether or not the route reads it: serde would take a struct from an
//!   array, and PostgreSQL cannot store a NUL;
//! - the URI is at most 16 KiB (`414`);
//! - no query parameter is given twice (`400 repeated_parameter`): which
//!   one would count is a guess, so neither does;
//! - the path and the query, once percent-decoded, hold valid UTF-8 and no
//!   control characters (`400`): such bytes have no place in an id or a
//!   number, and PostgreSQL cannot store a NUL;
//! - with KEYLEDGER_REQUIRE_HTTPS, a request that came over plain HTTP is
//!   refused (`403 https_required`), `GET /health` excepted;
//! - a handler that panics answers a JSON 500 and the connection lives on.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::router::MAX_BODY_BYTES;
use http_body_util::BodyExt;
use keyledger_http::extract::{check_object, BodyReadTimeout};
use keyledger_http::ApiError;

/// A layer of the front door (`router.rs`): `next` is what comes after it.
pub async fn screen<F: Future<Output = Response>>(request: Request, next: impl FnOnce(Request) -> F) -> Response {
    if let Err(error) = check(&request) {
        return error.into_response();
    }
    let request = if has_body(request.headers()) {
        match read_body(request).await {
            Ok(request) => request,
            Err(error) => return error.into_response(),
        }
    } else {
        request
    };
    match AssertUnwindSafe(next(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ApiError::internal(format!("handler panicked: {what}")).into_response()
        }
    }
}

/// No keyledger URI comes near this; a longer one is a probe or a mistake.
const MAX_URI_BYTES: usize = 16 * 1024;

fn check(request: &Request) -> Result<(), ApiError> {
    if request.extensions().get::<crate::limits::client_ip::UnreadableForwarded>().is_some() {
        return Err(ApiError::bad_request(
            "unreadable_forwarded_header",
            "The trusted proxy's forwarding header (KEYLEDGER_FORWARDED_HEADER) holds an entry that is not an address",
        ));
    }
    if request.extensions().get::<crate::server::PlainHttp>().is_some() && request.uri().path() != "/health" {
        return Err(ApiError::forbidden("This server answers over HTTPS only").with_code("https_required"));
    }
    let uri_length = request.uri().path().len() + request.uri().query().map_or(0, |q| q.len() + 1);
    if uri_length > MAX_URI_BYTES {
        return Err(ApiError::bad_request(
            "uri_too_long",
            format!("The request URI is longer than {MAX_URI_BYTES} bytes"),
        )
        .with_status(StatusCode::URI_TOO_LONG));
    }
    check_path(request.uri().path())?;
    if let Some(query) = request.uri().query() {
        check_query(query)?;
    }
    check_content_type(request.uri().path(), request.headers())
}

/// The one route that takes a body other than JSON: a CSV import.
const CSV_ROUTES: [&str; 1] = ["/api/v1/leads/import"];

fn check_path(path: &str) -> Result<(), ApiError> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("invalid_path", "The path is not valid UTF-8 once percent-decoded"))?;
    if decoded.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_path", "The path must not contain control characters"));
    }
    Ok(())
}

fn check_query(query: &str) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let field = if name.chars().any(char::is_control) { "query".into() } else { name.clone() };
        if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
            return Err(ApiError::field(&field, format!("{field} is not valid UTF-8 once percent-decoded")));
        }
        if name.chars().chain(value.chars()).any(char::is_control) {
            return Err(ApiError::field(&field, format!("{field} must not contain control characters")));
        }
        if !seen.insert(name.clone()) {
            return Err(ApiError::field(&field, format!("{field} is given more than once; give it once"))
                .with_code("repeated_parameter"));
        }
    }
    Ok(())
}

/// Reads the whole body within its deadline and size limit, checks it is a
/// JSON object (a CSV import's is checked by its handler), and hands the
/// request on with the body in memory.
async fn read_body(request: Request) -> Result<Request, ApiError> {
    let BodyReadTimeout(deadline) = request.extensions().get::<BodyReadTimeout>().copied().unwrap_or_default();
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => {
            return Err(ApiError::bad_request(
                "body_timeout",
                format!("The request body did not arrive within {} seconds", deadline.as_secs()),
            )
            .with_status(StatusCode::REQUEST_TIMEOUT))
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::bad_request(
                "body_too_large",
                format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Ok(Err(error)) => {
            return Err(ApiError::bad_request(
                "unreadable_body",
                format!("The request body could not be read: {error}"),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let csv = CSV_ROUTES.contains(&parts.uri.path())
        && parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_csv);
    if !csv {
        check_object(&bytes)?;
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// A body is present when it has a length above zero or is chunked.
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|length| length > 0)
}

/// `application/json`, or any `application/…+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `text/csv`, with any parameters.
fn is_csv(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("text/csv")
}

fn check_content_type(path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if !has_body(headers) {
        return Ok(());
    }
    let csv = |content_type: &str| CSV_ROUTES.contains(&path) && is_csv(content_type);
    match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        Some(Ok(content_type)) if is_json(content_type) || csv(content_type) => Ok(()),
        _ => Err(ApiError::bad_request(
            "unsupported_media_type",
            "Request bodies must be JSON, sent with `Content-Type: application/json`",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_types_are_recognised_with_their_parameters() {
        for json in ["application/json", "Application/JSON; charset=utf-8", "application/problem+json"] {
            assert!(is_json(json), "{json}");
        }
        for other in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json", ""]
        {
            assert!(!is_json(other), "{other}");
        }
    }

    #[test]
    fn a_query_gives_each_parameter_once_without_control_characters() {
        assert!(check_query("limit=5&after=3").is_ok());
        assert_eq!(check_query("limit=5&limit=6").unwrap_err().code, "repeated_parameter");
        assert_eq!(check_query("tenantId=%00").unwrap_err().field.as_deref(), Some("tenantId"));
        assert_eq!(check_query("a=%1B%5B31m").unwrap_err().field.as_deref(), Some("a"));
        assert!(check_query("a=%FF").is_err());
    }

    #[test]
    fn paths_with_control_characters_or_broken_utf8_are_refused() {
        assert!(check_path("/api/v1/licenses/abc").is_ok());
        assert!(check_path("/api/v1/api-keys/%00").is_err());
        assert!(check_path("/api/v1/api-keys/%0A").is_err());
        assert!(check_path("/api/v1/api-keys/%C3").is_err());
    }
}
