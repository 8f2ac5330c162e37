//! License keys: `XXXX-XXXX-XXXX-XXXX` over an alphabet without look-alikes.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// 32 symbols with no `0/O` or `1/I` pairs, so a key read aloud or typed from
/// a printout survives. 16 symbols of 5 bits give 80 bits of entropy, far out
/// of reach of anyone guessing keys against the anonymous endpoints.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const GROUPS: usize = 4;
const GROUP_LEN: usize = 4;
const KEY_LEN: usize = GROUPS * GROUP_LEN + (GROUPS - 1);

/// A well-formed license key. Parsing normalises case, so a key typed in
/// lower case finds the same license.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseKeyError {
    #[error("licenseKey is required")]
    Missing,
    #[error("licenseKey must look like XXXX-XXXX-XXXX-XXXX")]
    Malformed,
}

impl LicenseKey {
    /// Draws a new key. Callers pass a CSPRNG (`rand::rngs::OsRng`); tests
    /// pass a seeded one.
    pub fn generate(rng: &mut impl Rng) -> Self {
        let mut key = String::with_capacity(KEY_LEN);
        for group in 0..GROUPS {
            if group > 0 {
                key.push('-');
            }
            for _ in 0..GROUP_LEN {
                key.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
            }
        }
        Self(key)
    }

    /// Checks the shape before anything looks the key up, so malformed input
    /// never reaches the store.
    pub fn parse(raw: &str) -> Result<Self, LicenseKeyError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(LicenseKeyError::Missing);
        }
        let upper = trimmed.to_ascii_uppercase();
        if upper.len() != KEY_LEN {
            return Err(LicenseKeyError::Malformed);
        }
        let well_formed = upper.bytes().enumerate().all(|(i, b)| {
            if i % (GROUP_LEN + 1) == GROUP_LEN {
                b == b'-'
            } else {
                ALPHABET.contains(&b)
            }
        });
        if well_formed {
            Ok(Self(upper))
        } else {
            Err(LicenseKeyError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn generated_keys_parse_back_to_themselves() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let key = LicenseKey::generate(&mut rng);
            assert_eq!(LicenseKey::parse(key.as_str()), Ok(key));
        }
    }

    #[test]
    fn generated_keys_differ() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = LicenseKey::generate(&mut rng);
        let b = LicenseKey::generate(&mut rng);
        assert_ne!(a, b);
    }

    #[test]
    fn lower_case_keys_are_normalised() {
        let key = LicenseKey::parse(" abcd-efgh-jkmn-2345 ").unwrap();
        assert_eq!(key.as_str(), "ABCD-EFGH-JKMN-2345");
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "ABCD-EFGH-JKMN",
            "ABCD-EFGH-JKMN-23456",
            "ABCDEFGHJKMN2345XYZ",
            "ABCD-EFGH-JKMN-234O",
            "ABCD-EFGH-JKMN-2341",
            "ABCD_EFGH_JKMN_2345",
            "ÄBCD-EFGH-JKMN-2345",
        ] {
            assert_eq!(LicenseKey::parse(bad), Err(LicenseKeyError::Malformed), "{bad}");
        }
        assert_eq!(LicenseKey::parse("  "), Err(LicenseKeyError::Missing));
    }
}
