//! The master key: 32 bytes that seal every private signing key kept in
//! the database, and never enter it themselves. Whoever holds a database
//! dump without the master key can read public keys, but forge nothing.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 64 hex characters (32 bytes)")]
    Malformed,
    #[error("a sealed secret does not open with this master key")]
    WrongKey,
}

/// Cloning copies the key within the process; it never leaves it.
#[derive(Clone)]
pub struct MasterKey(LessSafeKey);

impl MasterKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, MasterKeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut bytes).map_err(|_| MasterKeyError::Malformed)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| MasterKeyError::Malformed)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A new random master key, as hex.
    pub fn generate_hex() -> String {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// Seals `secret`, bound to `context` (the row it belongs in), so a
    /// sealed value moved to another row does not open.
    pub fn seal(&self, secret: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut sealed = secret.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .expect("ChaCha20-Poly1305 seals any secret under 256 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, MasterKeyError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| MasterKeyError::WrongKey)?;
        if bytes.len() < NONCE_LEN {
            return Err(MasterKeyError::WrongKey);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| MasterKeyError::WrongKey)?;
        let mut in_out = ciphertext.to_vec();
        let opened = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| MasterKeyError::WrongKey)?;
        Ok(opened.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_the_same_key_and_context_only() {
        let key = MasterKey::from_hex(&MasterKey::generate_hex()).unwrap();
        let sealed = key.seal(b"private key bytes", "kid-1");
        assert_eq!(key.open(&sealed, "kid-1").unwrap(), b"private key bytes");
        assert!(key.open(&sealed, "kid-2").is_err(), "moved to another row");
        let other = MasterKey::from_hex(&MasterKey::generate_hex()).unwrap();
        assert!(other.open(&sealed, "kid-1").is_err(), "another master key");
        assert_ne!(key.seal(b"x", "k"), key.seal(b"x", "k"), "a fresh nonce each time");
    }

    #[test]
    fn only_32_bytes_of_hex_make_a_master_key() {
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}
