//! Random secrets and their at-rest form.

use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `len` alphanumeric characters from the operating system's CSPRNG.
pub fn random_token(len: usize) -> String {
    Alphanumeric.sample_string(&mut OsRng, len)
}

/// A short random identifier in lower case letters and digits.
pub fn random_id(len: usize) -> String {
    random_token(len).to_ascii_lowercase()
}

/// The only form in which API key secrets are stored.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two digests without an early exit that would leak, through
/// timing, how much of a guess was right.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
