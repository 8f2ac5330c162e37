//! The signed forms keyledger hands out: the `Keyledger-Signature` header
//! over an answer's exact bytes, compact JWS (a JWT signed with EdDSA,
//! RFC 8037) for offline license tokens, and Ed25519 public keys as JWKs.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The name of the header that carries an answer's signature.
pub const SIGNATURE_HEADER: &str = "keyledger-signature";

/// `x` of an Ed25519 JWK: the raw public key, base64url without padding.
pub fn public_x(key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())
}

/// The key id: the key's RFC 7638 JWK thumbprint, so anyone holding the
/// public key can compute it and no registry of ids is needed.
pub fn thumbprint(x: &str) -> String {
    // Members in lexicographic order, no whitespace, as RFC 7638 requires.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The public key as an OKP JWK for a JWKS document.
pub fn jwk(kid: &str, x: &str) -> Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig" })
}

/// `keyid="…", algorithm="ed25519", signature="<base64>"`: the value of
/// [`SIGNATURE_HEADER`] for `body`.
pub fn signature_header(kid: &str, key: &SigningKey, body: &[u8]) -> String {
    let signature = STANDARD.encode(key.sign(body).to_bytes());
    format!(r#"keyid="{kid}", algorithm="ed25519", signature="{signature}""#)
}

/// A compact JWS of `claims`, header `{"alg":"EdDSA","typ":"JWT","kid":…}`.
pub fn jwt(kid: &str, key: &SigningKey, claims: &impl Serialize) -> String {
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let claims = serde_json::to_value(claims).expect("token claims serialise");
    let signing_input = format!("{}.{}", encode(&header), encode(&claims));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()).to_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn the_thumbprint_of_rfc_8037s_example_key_is_its_published_one() {
        // RFC 8037 appendix A.3.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_jwt_verifies_with_the_key_it_names() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let token = jwt("k1", &key, &json!({ "sub": "x" }));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        key.verifying_key().verify(input.as_bytes(), &signature).unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "k1");
    }
}
