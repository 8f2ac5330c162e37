//! The tenant-wide form of an unusual activation pattern: a tenant's
//! activations in one clock hour (UTC) far above its own trailing rate,
//! "far" as `unusualActivationPattern.tenantSurge` says (see
//! [`Surge`]). Like the other detectors it reads only event times, so the
//! same log read again counts the same hours.
//!
//! An episode is a run of surging hours: the first hour over the
//! threshold is a finding, the hours right after it that stay over belong
//! to it, and a quiet hour ends it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, TimeZone, Utc};

use super::settings::Surge;

const HOUR: i64 = 3600;
/// Activations remembered by id, so one handed over twice (a feed read
/// again after a failed step) counts once.
const REMEMBERED: usize = 200_000;

/// What passed the threshold: the hour's activations so far, the most
/// allowed, and the trailing average it was measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurgeFinding {
    pub count: u32,
    pub threshold: u32,
    /// The tenant's average activations per hour before this hour,
    /// rounded up.
    pub trailing_per_hour: u32,
    pub hour_started_at: DateTime<Utc>,
    pub hour_ended_at: DateTime<Utc>,
}

/// One tenant's activations per hour.
#[derive(Debug, Default)]
struct Rates {
    /// Activations per Unix hour, for the trailing period and this hour.
    hours: BTreeMap<i64, u32>,
    /// The first hour with an activation seen: how much history there is.
    first_hour: i64,
    /// The last hour of the current (or last) episode.
    flagged: Option<i64>,
}

/// Every tenant's recent activation counts.
#[derive(Debug, Default)]
pub struct Surges {
    tenants: HashMap<String, Rates>,
    /// Keyed hashes of the latest activations counted, oldest first.
    counted: VecDeque<u64>,
    seen: HashSet<u64>,
    hasher: RandomState,
}

impl Surges {
    /// Counts activation `event_id` of the tenant at `at` (once, however
    /// often it is handed over); returns a finding when it is the one that
    /// makes its hour a new surge.
    pub fn activation(
        &mut self,
        tenant_id: &str,
        event_id: &str,
        at: DateTime<Utc>,
        rule: &Surge,
    ) -> Option<SurgeFinding> {
        if !self.first_time(event_id) {
            return None;
        }
        let hour = at.timestamp().div_euclid(HOUR);
        let rates =
            self.tenants.entry(tenant_id.to_owned()).or_insert_with(|| Rates { first_hour: hour, ..Rates::default() });
        rates.first_hour = rates.first_hour.min(hour);
        let count = {
            let slot = rates.hours.entry(hour).or_default();
            *slot = slot.saturating_add(1);
            *slot
        };
        let trailing = i64::from(rule.trailing_hours.max(1));
        if count == 1 {
            // A new hour: those older than the trailing period are done.
            let newest = rates.hours.keys().next_back().copied().unwrap_or(hour);
            rates.hours.retain(|&h, _| h >= newest - trailing);
        }
        let history = hour - rates.first_hour;
        if !rule.enabled || history < i64::from(rule.min_history_hours) {
            return None;
        }
        let span = history.min(trailing);
        let before: u64 = rates.hours.range(hour - span..hour).map(|(_, &n)| u64::from(n)).sum();
        let (trailing_per_hour, far) = if span == 0 {
            (0, 0)
        } else {
            let span = span as u64;
            (before.div_ceil(span), (u64::from(rule.factor) * before).div_ceil(span))
        };
        let threshold = u64::from(rule.min_activations).max(far);
        if u64::from(count) <= threshold {
            return None;
        }
        if let Some(last) = rates.flagged {
            if hour <= last {
                return None; // the episode's own hour, or a late event from before it
            }
            if hour == last + 1 {
                rates.flagged = Some(hour); // the episode goes on
                return None;
            }
        }
        rates.flagged = Some(hour);
        let start = Utc.timestamp_opt(hour * HOUR, 0).single()?;
        Some(SurgeFinding {
            count,
            threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
            trailing_per_hour: u32::try_from(trailing_per_hour).unwrap_or(u32::MAX),
            hour_started_at: start,
            hour_ended_at: start + chrono::Duration::seconds(HOUR),
        })
    }

    /// Takes back the finding for `hour` that could not be recorded (its
    /// license refused it), so the hour's next activation raises it again.
    pub fn unflag(&mut self, tenant_id: &str, hour_started_at: DateTime<Utc>) {
        let hour = hour_started_at.timestamp().div_euclid(HOUR);
        if let Some(rates) = self.tenants.get_mut(tenant_id) {
            if rates.flagged == Some(hour) {
                rates.flagged = None;
            }
        }
    }

    fn first_time(&mut self, event_id: &str) -> bool {
        let key = self.hasher.hash_one(event_id);
        if !self.seen.insert(key) {
            return false;
        }
        self.counted.push_back(key);
        if self.counted.len() > REMEMBERED {
            if let Some(oldest) = self.counted.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }

    /// Forgets tenants with no activation since `before`.
    pub fn forget_before(&mut self, before: DateTime<Utc>) {
        let hour = before.timestamp().div_euclid(HOUR);
        self.tenants.retain(|_, rates| rates.hours.keys().next_back().is_some_and(|&last| last >= hour));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: i64, second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 / HOUR * HOUR + hour * HOUR + second, 0).unwrap()
    }

    fn rule() -> Surge {
        Surge { enabled: true, factor: 10, min_activations: 20, trailing_hours: 48, min_history_hours: 24 }
    }

    /// `per_hour` activations in each of `hours` hours from hour 0.
    fn steady(surges: &mut Surges, hours: i64, per_hour: i64) {
        for hour in 0..hours {
            for n in 0..per_hour {
                assert_eq!(surges.activation("t", &format!("{hour}-{n}"), at(hour, n), &rule()), None, "hour {hour}");
            }
        }
    }

    #[test]
    fn an_hour_far_above_the_trailing_rate_is_found_once() {
        let mut surges = Surges::default();
        steady(&mut surges, 30, 3);
        // 3 an hour before: the threshold is max(20, 10 × 3) = 30.
        let found: Vec<_> =
            (0..40).filter_map(|n| surges.activation("t", &format!("t-30-{}", n), at(30, n), &rule())).collect();
        assert_eq!(found.len(), 1);
        let finding = found[0];
        assert_eq!((finding.count, finding.threshold, finding.trailing_per_hour), (31, 30, 3));
        assert_eq!((finding.hour_started_at, finding.hour_ended_at), (at(30, 0), at(31, 0)));
        // The next hour still surging is the same episode; after a quiet
        // hour a new surge is a new one.
        assert!((0..60).all(|n| surges.activation("t", &format!("t-31-{}", n), at(31, n), &rule()).is_none()));
        surges.activation("t", &format!("t-32-{}", 0), at(32, 0), &rule());
        assert!(
            (0..100).filter_map(|n| surges.activation("t", &format!("t-33-{}", n), at(33, n), &rule())).count() == 1
        );
    }

    #[test]
    fn an_activation_handed_over_twice_counts_once() {
        let mut surges = Surges::default();
        steady(&mut surges, 30, 0);
        surges.activation("t", "first", at(0, 0), &rule());
        for _ in 0..50 {
            assert_eq!(surges.activation("t", "again", at(30, 0), &rule()), None);
        }
    }

    #[test]
    fn a_late_event_of_an_earlier_hour_or_an_unrecorded_finding() {
        let mut surges = Surges::default();
        steady(&mut surges, 30, 1);
        let id = |n: i64| format!("late-{n}");
        assert_eq!((0..21).filter_map(|n| surges.activation("t", &id(n), at(30, n), &rule())).count(), 1);
        // A late event of the hour before, itself over: not a new episode.
        assert_eq!((100..125).filter_map(|n| surges.activation("t", &id(n), at(29, n), &rule())).count(), 0);
        // The finding for hour 30 was refused by its license: the next
        // activation of the hour raises it again.
        surges.unflag("t", at(30, 0));
        assert!(surges.activation("t", "after-unflag", at(30, 50), &rule()).is_some());
    }

    #[test]
    fn a_tenant_without_enough_history_is_not_judged() {
        let mut surges = Surges::default();
        steady(&mut surges, 10, 1);
        assert!((0..500).all(|n| surges.activation("t", &format!("t-10-{}", n), at(10, n), &rule()).is_none()));
    }

    #[test]
    fn growth_within_the_factor_and_other_tenants_are_not_surges() {
        let mut surges = Surges::default();
        steady(&mut surges, 30, 5);
        assert!(
            (0..45).all(|n| surges.activation("t", &format!("t-30-{}", n), at(30, n), &rule()).is_none()),
            "9× the rate"
        );
        assert!((0..20).all(|n| surges.activation("other", &format!("other-30-{}", n), at(30, n), &rule()).is_none()));
    }

    #[test]
    fn the_floor_keeps_a_quiet_tenant_from_alarming_on_a_handful() {
        let mut surges = Surges::default();
        steady(&mut surges, 30, 0);
        surges.activation("t", &format!("t-0-{}", 0), at(0, 0), &rule());
        assert!((0..20).all(|n| surges.activation("t", &format!("t-30-{}", n), at(30, n), &rule()).is_none()));
        assert!(
            surges.activation("t", &format!("t-30-{}", 21), at(30, 21), &rule()).is_some(),
            "21 is over the floor of 20"
        );
    }
}
