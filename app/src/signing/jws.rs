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

#[derive(Serialize)]
struct JwtHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// A compact JWS of `claims`, header `{"alg":"EdDSA","typ":"JWT","kid":…}`.
pub fn jwt(kid: &str, key: &SigningKey, claims: &impl Serialize) -> String {
    let header = serde_json::to_vec(&JwtHeader { alg: "EdDSA", kid, typ: "JWT" }).expect("a header serialises");
    let claims = serde_json::to_vec(claims).expect("token claims serialise");
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()).to_bytes());
    format!("{signing_input}.{signature}")
}

/// An Ed25519 public key as PEM (a SubjectPublicKeyInfo, RFC 8410), the
/// form most libraries load.
pub fn ed25519_public_pem(raw: &[u8; 32]) -> String {
    // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING { key } }
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(raw);
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
}

/// The claims of a compact JWS signed with EdDSA by one of `keys` (the
/// one its header's `kid` names). Expiry is not checked: that is the
/// caller's to decide.
pub fn verify_jwt(token: &str, keys: &[super::PublicKey]) -> Option<Value> {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let (input, signature) = token.rsplit_once('.')?;
    let (header, claims) = input.split_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header["alg"] != "EdDSA" {
        return None;
    }
    let key = keys.iter().find(|key| header["kid"] == key.kid.as_str())?;
    let raw: [u8; 32] = URL_SAFE_NO_PAD.decode(&key.x).ok()?.try_into().ok()?;
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    VerifyingKey::from_bytes(&raw).ok()?.verify(input.as_bytes(), &signature).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
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
        let published = super::super::PublicKey {
            kid: "k1".into(),
            x: public_x(&key),
            created_at: String::new(),
            retired_at: None,
            published_until: None,
        };
        assert_eq!(verify_jwt(&token, std::slice::from_ref(&published)).unwrap()["sub"], "x");
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(verify_jwt(&jwt("k1", &other, &json!({ "sub": "x" })), &[published]).is_none(), "a forged token");
    }
}
