//! Keygen's response signatures, which its clients check on every answer
//! before they look at its status:
//!
//! ```text
//! Keygen-Signature: keyid="<kid>", algorithm="ed25519", signature="<base64>",
//!                   headers="(request-target) host date digest"
//! Keygen-Date / Date:     <HTTP date>
//! Keygen-Digest / Digest: sha-256=<base64 of SHA-256 of the body>
//! ```
//!
//! signed over `(request-target): <method in lower case> <path and query
//! as received>\nhost: <Host as received>\ndate: <date>\ndigest:
//! <digest>` with the account's (tenant's) current Ed25519 key; an answer
//! for an account that does not exist is signed with the platform key.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use ed25519_dalek::Signer;
use keyledger_app::signing::{ActiveKey, Directory};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::PREFIX;
use keyledger_http::dialect::RequestHead;

/// Answers are JSON documents of a few kilobytes; a license file with
/// every entitlement stays far below this.
const MAX_SIGNED_BODY: usize = 8 * 1024 * 1024;

/// The answer with its body read, signed and put back.
pub(super) async fn seal(directory: &Directory, head: &RequestHead, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_SIGNED_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "a Keygen answer's body could not be read to sign it");
            parts.status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            axum::body::Bytes::new()
        }
    };
    let key = signer(directory, &head.target).await;
    let date = http_date(Utc::now());
    let digest = format!("sha-256={}", STANDARD.encode(Sha256::digest(&bytes)));
    let host = head.host.as_deref().unwrap_or_default();
    let signing = signing_string(head.method.as_str(), &head.target, host, &date, &digest);
    let signature = STANDARD.encode(key.key.sign(signing.as_bytes()).to_bytes());
    let header = format!(
        r#"keyid="{}", algorithm="ed25519", signature="{signature}", headers="(request-target) host date digest""#,
        key.kid
    );
    let headers = &mut parts.headers;
    // Set again from the body as it is sent.
    headers.remove(axum::http::header::CONTENT_LENGTH);
    for (name, value) in [("keygen-signature", header), ("keygen-date", date.clone()), ("date", date)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    for name in ["keygen-digest", "digest"] {
        if let Ok(value) = HeaderValue::from_str(&digest) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers.insert(HeaderName::from_static("keygen-version"), HeaderValue::from_static("1.8"));
    Response::from_parts(parts, Body::from(bytes))
}

/// What Keygen signs.
pub(super) fn signing_string(method: &str, target: &str, host: &str, date: &str, digest: &str) -> String {
    format!("(request-target): {} {target}\nhost: {host}\ndate: {date}\ndigest: {digest}", method.to_ascii_lowercase())
}

/// The account's current key, from `/keygen/{account}/…`; the platform's
/// for an account that does not exist (its clients refuse that answer
/// as they would any answer not signed with the key they were given).
async fn signer(directory: &Directory, target: &str) -> Arc<ActiveKey> {
    let account = target.strip_prefix(PREFIX).and_then(|rest| rest.split(['/', '?']).next()).unwrap_or_default();
    let tenant = match uuid::Uuid::parse_str(account) {
        Ok(id) => directory.tenant(&id.to_string()).await.ok().flatten(),
        Err(_) => None,
    };
    tenant.map_or_else(|| directory.platform().clone(), |keys| keys.current.clone())
}

/// RFC 9110's IMF-fixdate, as `Date` carries it.
pub(super) fn http_date(at: chrono::DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, SigningKey, Verifier};

    /// The signing string of keygen-rs's own verifier test, and a
    /// signature over it that verifies with the public key.
    #[test]
    fn the_signing_string_is_keygens() {
        let signing = signing_string(
            "POST",
            "/keygen/acct/v1/licenses/actions/validate-key?x=1",
            "127.0.0.1:8080",
            "Sun, 06 Dec 2026 18:58:58 GMT",
            "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        );
        assert_eq!(
            signing,
            "(request-target): post /keygen/acct/v1/licenses/actions/validate-key?x=1\nhost: 127.0.0.1:8080\n\
             date: Sun, 06 Dec 2026 18:58:58 GMT\ndigest: sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        let key = SigningKey::from_bytes(&[7; 32]);
        let signature: Signature = key.sign(signing.as_bytes());
        assert!(key.verifying_key().verify(signing.as_bytes(), &signature).is_ok());
    }

    #[test]
    fn dates_are_imf_fixdates() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-06T08:05:09Z").unwrap().with_timezone(&Utc);
        assert_eq!(http_date(at), "Sun, 06 Dec 2026 08:05:09 GMT");
    }
}
