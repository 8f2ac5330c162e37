//! A product's releases (seed 003's version API), and the update check
//! validate answers from them.

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

/// The channel a release goes to unless told otherwise, and the one the
/// update check reads.
pub const STABLE: &str = "stable";
/// Longest release notes, in characters.
pub const MAX_NOTES_LEN: usize = 10_000;
/// Longest download URL.
pub const MAX_URL_LEN: usize = 2_048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Semantic version, as given (`2.4.0`, `3.0.0-beta.1`).
    pub version: String,
    pub channel: String,
    pub release_date: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
    /// Clients older than it must update.
    pub mandatory: bool,
}

/// What validate answers a client reporting `appVersion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCheck {
    pub update_available: bool,
    /// The newest stable release out by now, if any.
    pub latest_version: Option<String>,
    /// A mandatory stable release newer than the client's is out.
    pub mandatory: bool,
}

/// Why a version, URL or notes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseFieldError {
    #[error("must be a semantic version such as 2.4.0 or 3.0.0-beta.1")]
    NotSemver,
    #[error("must be an http:// or https:// URL of at most {MAX_URL_LEN} characters, without spaces")]
    BadUrl,
    #[error("must be at most {MAX_NOTES_LEN} characters, without control characters other than line breaks and tabs")]
    BadNotes,
}

/// A semantic version, as given.
pub fn parse_version(raw: &str) -> Result<String, ReleaseFieldError> {
    Version::parse(raw.trim()).map(|_| raw.trim().to_owned()).map_err(|_| ReleaseFieldError::NotSemver)
}

pub fn parse_download_url(raw: &str) -> Result<String, ReleaseFieldError> {
    let ok = (raw.starts_with("https://") || raw.starts_with("http://"))
        && raw.len() <= MAX_URL_LEN
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ReleaseFieldError::BadUrl)
    }
}

pub fn parse_release_notes(raw: &str) -> Result<String, ReleaseFieldError> {
    let ok = raw.chars().count() <= MAX_NOTES_LEN
        && !raw.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        && crate::check_display_text(&raw.replace(['\n', '\r', '\t'], " ")).is_ok();
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ReleaseFieldError::BadNotes)
    }
}

/// The update check for a client at `app_version` (a semantic version)
/// against `releases`, at `now`: stable releases dated by then count.
pub fn check_for_update(releases: &[Release], app_version: &Version, now: DateTime<Utc>) -> UpdateCheck {
    let out: Vec<(Version, &Release)> = releases
        .iter()
        .filter(|release| release.channel == STABLE && release.release_date <= now)
        .filter_map(|release| Version::parse(&release.version).ok().map(|version| (version, release)))
        .collect();
    let latest = out.iter().max_by(|a, b| a.0.cmp(&b.0));
    UpdateCheck {
        update_available: latest.is_some_and(|(version, _)| version > app_version),
        latest_version: latest.map(|(_, release)| release.version.clone()),
        mandatory: out.iter().any(|(version, release)| release.mandatory && version > app_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn release(version: &str, channel: &str, mandatory: bool, day: u32) -> Release {
        Release {
            version: version.into(),
            channel: channel.into(),
            release_date: Utc.with_ymd_and_hms(2026, 4, day, 0, 0, 0).unwrap(),
            download_url: None,
            release_notes: None,
            mandatory,
        }
    }

    #[test]
    fn the_update_check_reads_stable_releases_out_by_now() {
        let releases = [
            release("1.0.0", STABLE, false, 1),
            release("1.1.0", STABLE, true, 2),
            release("1.2.0", STABLE, false, 3),
            release("2.0.0-beta.1", "beta", true, 4),
            release("1.3.0", STABLE, false, 30),
        ];
        let now = Utc.with_ymd_and_hms(2026, 4, 10, 0, 0, 0).unwrap();
        let check = |app: &str| check_for_update(&releases, &Version::parse(app).unwrap(), now);
        assert_eq!(
            check("1.0.5"),
            UpdateCheck { update_available: true, latest_version: Some("1.2.0".into()), mandatory: true }
        );
        assert_eq!(
            check("1.1.0"),
            UpdateCheck { update_available: true, latest_version: Some("1.2.0".into()), mandatory: false }
        );
        assert_eq!(
            check("1.2.0"),
            UpdateCheck { update_available: false, latest_version: Some("1.2.0".into()), mandatory: false }
        );
        assert_eq!(check_for_update(&[], &Version::parse("1.0.0").unwrap(), now).latest_version, None);
    }

    #[test]
    fn versions_urls_and_notes_are_checked() {
        assert_eq!(parse_version(" 2.4.0 "), Ok("2.4.0".into()));
        assert_eq!(parse_version("2.4"), Err(ReleaseFieldError::NotSemver));
        assert!(parse_download_url("https://example.com/app-2.4.0.dmg").is_ok());
        assert_eq!(parse_download_url("ftp://example.com/x"), Err(ReleaseFieldError::BadUrl));
        assert_eq!(parse_download_url("https://a b"), Err(ReleaseFieldError::BadUrl));
        assert!(parse_release_notes("Fixes:\n- a crash\n").is_ok());
        assert_eq!(parse_release_notes("bell\u{7}"), Err(ReleaseFieldError::BadNotes));
        assert_eq!(parse_release_notes("rtl\u{202E}"), Err(ReleaseFieldError::BadNotes));
    }
}
