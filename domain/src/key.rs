//! License keys: `XXXX-XXXX-XXXX-XXXX` (the default) or seed 001's
//! `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`, over an alphabet without look-alikes.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// 32 symbols with no `0/O` or `1/I` pairs, so a key read aloud or typed from
/// a printout survives. 16 symbols of 5 bits give 80 bits of entropy (25
/// give 125), far out of reach of anyone guessing keys against the
/// anonymous endpoints.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// The shape of the keys a product's licenses get: `groups` groups of
/// `groups` symbols, joined by `-`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyFormat {
    /// `XXXX-XXXX-XXXX-XXXX`: seed 000's keys.
    #[default]
    #[serde(rename = "XXXX-XXXX-XXXX-XXXX")]
    FourByFour,
    /// `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`: seed 001's keys.
    #[serde(rename = "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")]
    FiveByFive,
}

impl KeyFormat {
    pub const ALL: [KeyFormat; 2] = [KeyFormat::FourByFour, KeyFormat::FiveByFive];

    /// Groups, and symbols per group.
    fn groups(self) -> usize {
        match self {
            Self::FourByFour => 4,
            Self::FiveByFive => 5,
        }
    }

    fn len(self) -> usize {
        self.groups() * self.groups() + self.groups() - 1
    }

    /// As written on the wire: `XXXX-XXXX-XXXX-XXXX`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FourByFour => "XXXX-XXXX-XXXX-XXXX",
            Self::FiveByFive => "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.as_str() == raw)
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn fits(self, upper: &str) -> bool {
        let group_len = self.groups();
        upper.len() == self.len()
            && upper.bytes().enumerate().all(|(i, b)| {
                if i % (group_len + 1) == group_len {
                    b == b'-'
                } else {
                    ALPHABET.contains(&b)
                }
            })
    }
}

/// A well-formed license key. Parsing normalises case, so a key typed in
/// lower case finds the same license.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseKeyError {
    #[error("licenseKey is required")]
    Missing,
    #[error("licenseKey must look like XXXX-XXXX-XXXX-XXXX or XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")]
    Malformed,
}

impl LicenseKey {
    /// Draws a new key. Callers pass a CSPRNG (`rand::rngs::OsRng`); tests
    /// pass a seeded one.
    pub fn generate(rng: &mut impl Rng, format: KeyFormat) -> Self {
        let mut key = String::with_capacity(format.len());
        for group in 0..format.groups() {
            if group > 0 {
                key.push('-');
            }
            for _ in 0..format.groups() {
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
        if KeyFormat::ALL.into_iter().any(|format| format.fits(&upper)) {
            Ok(Self(upper))
        } else {
            Err(LicenseKeyError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as a number, for compact maps: five bits a symbol, the
    /// five-by-five format in the top bit. Distinct keys give distinct
    /// numbers.
    pub fn packed(&self) -> u128 {
        let symbols = self.0.bytes().filter(|b| *b != b'-');
        let bits = symbols.fold(0u128, |bits, b| {
            let index = ALPHABET.iter().position(|a| *a == b).unwrap_or_default();
            (bits << 5) | index as u128
        });
        match self.format() {
            KeyFormat::FourByFour => bits,
            KeyFormat::FiveByFive => bits | 1 << 127,
        }
    }

    pub fn format(&self) -> KeyFormat {
        if KeyFormat::FiveByFive.fits(&self.0) {
            KeyFormat::FiveByFive
        } else {
            KeyFormat::FourByFour
        }
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
        for format in KeyFormat::ALL {
            for _ in 0..1000 {
                let key = LicenseKey::generate(&mut rng, format);
                assert_eq!(key.format(), format);
                assert_eq!(LicenseKey::parse(key.as_str()), Ok(key));
            }
        }
        let five = LicenseKey::generate(&mut rng, KeyFormat::FiveByFive);
        assert_eq!(five.as_str().len(), 29);
        assert_eq!(five.as_str().split('-').map(str::len).collect::<Vec<_>>(), [5; 5]);
    }

    #[test]
    fn packed_keys_differ_when_keys_do() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut seen = std::collections::HashSet::new();
        for format in KeyFormat::ALL {
            for _ in 0..2000 {
                assert!(seen.insert(LicenseKey::generate(&mut rng, format).packed()));
            }
        }
        let four = LicenseKey::parse("AAAA-AAAA-AAAA-AAAB").unwrap();
        let five = LicenseKey::parse("AAAAA-AAAAA-AAAAA-AAAAA-AAAAB").unwrap();
        assert_ne!(four.packed(), five.packed(), "the same bits in another format");
    }

    #[test]
    fn generated_keys_differ() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = LicenseKey::generate(&mut rng, KeyFormat::default());
        let b = LicenseKey::generate(&mut rng, KeyFormat::default());
        assert_ne!(a, b);
    }

    #[test]
    fn lower_case_keys_are_normalised() {
        let key = LicenseKey::parse(" abcd-efgh-jkmn-2345 ").unwrap();
        assert_eq!(key.as_str(), "ABCD-EFGH-JKMN-2345");
        let key = LicenseKey::parse("abcde-fghjk-mnpqr-stuvw-xyz23").unwrap();
        assert_eq!(key.as_str(), "ABCDE-FGHJK-MNPQR-STUVW-XYZ23");
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
            "ABCDE-FGHJK-MNPQR-STUVW",
            "ABCDE-FGHJK-MNPQR-STUVW-XYZ2O",
            "ABCD-EFGHJK-MNPQR-STUVW-XYZ23",
        ] {
            assert_eq!(LicenseKey::parse(bad), Err(LicenseKeyError::Malformed), "{bad}");
        }
        assert_eq!(LicenseKey::parse("  "), Err(LicenseKeyError::Missing));
    }
}
