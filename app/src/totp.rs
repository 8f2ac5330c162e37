//! Time-based one-time passwords (RFC 6238, as authenticator apps make
//! them): HMAC-SHA1 over the count of 30-second steps, six digits. A code
//! of the step before or after is accepted too (a phone's clock drifts),
//! and no step is accepted twice.

use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use ring::hmac;

/// Seconds a code lasts.
const STEP_SECS: i64 = 30;
/// Digits of a code.
const DIGITS: u32 = 6;
/// Bytes of a secret (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    let mut secret = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    secret
}

/// The step `at` falls in.
pub fn step_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(STEP_SECS)
}

/// The code of `step` (HOTP of the step count, RFC 4226), with `digits`.
fn code_of(secret: &[u8], step: i64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10u32.pow(digits)
}

/// The six-digit code of `step`, as an app shows it.
pub fn code_at(secret: &[u8], step: i64) -> String {
    format!("{:06}", code_of(secret, step, DIGITS))
}

/// The step whose code `given` is, among the steps around `now`, when it
/// is later than `last_used` (a code is good once); spaces are ignored.
pub fn verify(secret: &[u8], given: &str, now: DateTime<Utc>, last_used: Option<i64>) -> Option<i64> {
    let given: String = given.chars().filter(|c| !c.is_whitespace()).collect();
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(now);
    (now - 1..=now + 1)
        .filter(|step| last_used.is_none_or(|last| *step > last))
        .find(|step| crate::secret::digests_match(&code_at(secret, *step), &given))
}

/// The secret in base32 (RFC 4648, no padding), as apps take it typed in.
pub fn base32(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in secret {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` address an app reads from a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode(issuer),
        encode(account),
        base32(secret),
        encode(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 secret and its eight-digit codes.
    #[test]
    fn codes_are_those_of_the_rfc() {
        let secret = b"12345678901234567890";
        for (time, code) in
            [(59, 94_287_082), (1_111_111_109, 7_081_804), (1_234_567_890, 89_005_924), (2_000_000_000, 69_279_037)]
        {
            assert_eq!(code_of(secret, time / STEP_SECS, 8), code, "at {time}");
        }
    }

    #[test]
    fn a_code_is_good_around_its_step_and_once() {
        let secret = new_secret();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let step = step_of(now);
        assert_eq!(verify(&secret, &code_at(&secret, step), now, None), Some(step));
        assert_eq!(verify(&secret, &code_at(&secret, step - 1), now, None), Some(step - 1));
        assert_eq!(verify(&secret, &code_at(&secret, step + 2), now, None), None);
        assert_eq!(verify(&secret, &code_at(&secret, step), now, Some(step)), None, "used once already");
        let spaced = code_at(&secret, step);
        assert_eq!(verify(&secret, &format!("{} {}", &spaced[..3], &spaced[3..]), now, None), Some(step));
        assert_eq!(verify(&secret, "12345", now, None), None);
        assert_eq!(verify(&secret, "abcdef", now, None), None);
    }

    #[test]
    fn base32_is_rfc_4648s() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(otpauth_uri("keyledger", "ana@example.com", b"foobar")
            .starts_with("otpauth://totp/keyledger:ana@example.com?secret=MZXW6YTBOI&issuer=keyledger"));
    }
}
