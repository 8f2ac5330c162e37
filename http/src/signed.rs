//! Signed answers: a JSON body's exact bytes with their Ed25519 signature
//! in the `Keyledger-Signature` header, by the key of the tenant the
//! answer is about (or the platform key when no tenant can be named).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyledger_app::signing::{jws, ActiveKey};

/// `bytes` (a JSON body) answered with `status` and their signature.
pub fn signed_json(signer: &ActiveKey, status: StatusCode, bytes: Vec<u8>) -> Response {
    let signature = jws::signature_header(&signer.kid, &signer.key, &bytes);
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&signature) {
        headers.insert(jws::SIGNATURE_HEADER, value);
    }
    response
}
