//! A license's policy: the rules beyond its seats and expiry that a vendor
//! picks per license — heartbeats that free dead seats, a transfer limit,
//! seat overage, and a user cap.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Shortest heartbeat duration: a few seconds, so tests can use it.
pub const MIN_HEARTBEAT_SECS: u32 = 2;
/// Longest heartbeat duration: a year.
pub const MAX_HEARTBEAT_SECS: u32 = 366 * 24 * 3600;
/// Most deactivations a transfer limit can allow per period.
pub const MAX_TRANSFERS: u32 = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// A device with no validate or heartbeat within this many seconds is
    /// dead: its seat is freed. None: devices never die.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Resurrection::is_none")]
    pub resurrection: Resurrection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_limit: Option<TransferLimit>,
    #[serde(default, skip_serializing_if = "Overage::is_none")]
    pub overage: Overage,
    /// Seed 003's user cap: recorded and reported; keyledger has no
    /// end-user accounts to count against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_users: Option<u32>,
}

/// What happens when a dead device calls again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resurrection {
    /// It is answered `heartbeat_dead` and must activate again.
    #[default]
    None,
    /// Its call revives it: it takes a seat again if one is free.
    Revive,
}

impl Resurrection {
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// At most `count` deactivations in any `period_secs` (Cryptlex's allowed
/// deactivations; seed 004 answers 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLimit {
    pub count: u32,
    pub period_secs: u32,
}

/// Activations allowed beyond the seats (Keygen's overage strategies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overage {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "1.25")]
    Quarter,
    #[serde(rename = "1.5")]
    Half,
    #[serde(rename = "2")]
    Double,
}

impl Overage {
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(Self::None),
            "1.25" => Some(Self::Quarter),
            "1.5" => Some(Self::Half),
            "2" => Some(Self::Double),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Quarter => "1.25",
            Self::Half => "1.5",
            Self::Double => "2",
        }
    }

    /// Devices `seats` admit under this overage, rounded down.
    pub fn allowed(self, seats: u32) -> u32 {
        let seats = u64::from(seats);
        let allowed = match self {
            Self::None => seats,
            Self::Quarter => seats * 5 / 4,
            Self::Half => seats * 3 / 2,
            Self::Double => seats * 2,
        };
        u32::try_from(allowed).unwrap_or(u32::MAX)
    }
}

impl Policy {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// How long after its last recorded call a device counts as dead. A
    /// device's calls are recorded at most every quarter of the heartbeat
    /// duration ([`Policy::record_every`]), so the last recorded one may be
    /// that much older than the last call: a device calling within the
    /// duration is never taken for dead, and one silent for it is culled
    /// within a quarter more.
    pub fn dead_after(&self) -> Option<Duration> {
        self.heartbeat_secs.map(|secs| Duration::milliseconds(i64::from(secs) * 1250))
    }

    /// How often a device's validate or heartbeat is written to the log:
    /// `interval` (the server's setting), or a quarter of the heartbeat
    /// duration if that is shorter.
    pub fn record_every(&self, interval: Duration) -> Duration {
        match self.heartbeat_secs {
            Some(secs) => interval.min(Duration::milliseconds(i64::from(secs) * 250)),
            None => interval,
        }
    }

    /// Whether a device last recorded at `last_seen` is dead at `now`.
    pub fn is_dead(&self, last_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.dead_after().is_some_and(|after| now >= last_seen + after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn overage_rounds_down() {
        assert_eq!(Overage::None.allowed(4), 4);
        assert_eq!(Overage::Quarter.allowed(4), 5);
        assert_eq!(Overage::Quarter.allowed(1), 1);
        assert_eq!(Overage::Half.allowed(3), 4);
        assert_eq!(Overage::Double.allowed(3), 6);
        assert_eq!(Overage::Double.allowed(u32::MAX), u32::MAX);
        for overage in [Overage::None, Overage::Quarter, Overage::Half, Overage::Double] {
            assert_eq!(Overage::parse(overage.as_str()), Some(overage));
        }
    }

    #[test]
    fn a_device_is_dead_a_quarter_after_its_heartbeat_duration() {
        let t = |s: i64| Utc.with_ymd_and_hms(2026, 4, 22, 10, 0, 0).unwrap() + Duration::seconds(s);
        let policy = Policy { heartbeat_secs: Some(60), ..Policy::default() };
        assert!(!policy.is_dead(t(0), t(74)));
        assert!(policy.is_dead(t(0), t(75)));
        assert!(!Policy::default().is_dead(t(0), t(1_000_000)));
        assert_eq!(policy.record_every(Duration::seconds(300)), Duration::seconds(15));
        assert_eq!(policy.record_every(Duration::seconds(5)), Duration::seconds(5));
    }

    #[test]
    fn a_default_policy_is_left_out_of_events() {
        assert_eq!(serde_json::to_string(&Policy::default()).unwrap(), "{}");
        let policy = Policy { overage: Overage::Half, resurrection: Resurrection::Revive, ..Policy::default() };
        assert_eq!(serde_json::to_string(&policy).unwrap(), r#"{"resurrection":"revive","overage":"1.5"}"#);
    }
}
