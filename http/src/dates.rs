//! Instants as requests give them: an RFC 3339 date-time
//! (`2026-11-01T09:30:00Z`), or a plain date (`2026-11-01`), which means
//! midnight UTC — the form the source documents use for dates such as a
//! release's. Errors name both forms.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};

/// What an unreadable instant is told, after the field's name.
pub const EXPECTED: &str =
    "must be an RFC 3339 date-time such as 2026-11-01T09:30:00Z, or a date such as 2026-11-01 (midnight UTC)";

/// An instant from its text, or None when it is neither form.
pub fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Some(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

/// For `#[serde(deserialize_with = "…")]` on an `Option<DateTime<Utc>>`
/// field (with `#[serde(default)]`): null or absent is None.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(raw) => parse_instant(&raw).map(Some).ok_or_else(|| serde::de::Error::custom(EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_midnight_utc_and_a_date_time_keeps_its_instant() {
        assert_eq!(parse_instant("2026-11-01").unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(parse_instant("2026-11-01T09:30:00+02:00").unwrap().to_rfc3339(), "2026-11-01T07:30:00+00:00");
        assert!(parse_instant("2026-13-01").is_none());
        assert!(parse_instant("01/11/2026").is_none());
        assert!(parse_instant("").is_none());
    }
}
