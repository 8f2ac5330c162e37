//! Counting validate and heartbeat calls per device.
//!
//! Most of those calls write no event (a heartbeat reaches the log at most
//! once per interval), so the detector could not see a device calling in
//! a loop. The API counts each device's calls in fixed windows
//! (`excessiveHeartbeats.windowSecs`, aligned to the Unix epoch so every
//! process agrees on them) and remembers how many windows in a row the
//! device has passed its allowance. When that run reaches
//! `sustainedWindows` (and again at every further multiple of it while the
//! device keeps on), the call past the allowance is handed to the log as
//! one `LicenseCallRateExceeded` event naming the run's length; the
//! detector turns it into a finding. A device over its allowance now and
//! then writes nothing, and a fleet of misbehaving devices writes one
//! event per device per sustained run, not one per window.
//!
//! Counts live in the memory of each process: behind a load balancer a
//! device's calls are split between processes, and each counts its share;
//! a restart starts every run again.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use keyledger_domain::MachineHash;

const SHARDS: usize = 64;
/// A shard forgets devices whose run can no longer continue when it holds
/// more devices than this.
const PRUNE_ABOVE: usize = 4096;

/// What the counter reports: a run of windows over the allowance that has
/// reached a multiple of the sustained length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverAllowance {
    /// The run's last window, the one this call is in.
    pub window_started_at: DateTime<Utc>,
    /// Calls in that window so far (one over the allowance).
    pub calls: u32,
    /// Consecutive windows over the allowance, this one included.
    pub windows: u32,
}

/// How a tenant counts: a device may make `allowance` calls per window
/// of `window_secs`; a run of `sustained` windows over it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub allowance: u32,
    pub window_secs: u32,
    pub sustained: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The window's index in units of its own length.
    window: i64,
    /// Its length in seconds: tenants' windows differ.
    secs: i64,
    calls: u32,
    /// Windows over the allowance in a row before this one.
    run_before: u32,
}

impl Slot {
    fn over(&self, allowance: u32) -> bool {
        self.calls > allowance
    }
}

/// Call counts of the current window per license and device, in shards so
/// concurrent calls seldom wait for each other. A device is keyed by a
/// 64-bit keyed hash of its license and machine, so counting a call
/// allocates nothing (two devices sharing a hash would share a count:
/// about one chance in 10^19 per pair).
pub struct CallCounter {
    shards: Vec<Mutex<HashMap<u64, Slot>>>,
    hasher: RandomState,
}

impl Default for CallCounter {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }
}

impl CallCounter {
    /// Counts one call at `now`. Returns the run when this call is the
    /// first past the allowance in a window that brings the device's run
    /// of windows over it to a multiple of `sustained`; every other call
    /// returns None.
    pub fn count(
        &self,
        license_id: &str,
        machine: &MachineHash,
        rule: Allowance,
        now: DateTime<Utc>,
    ) -> Option<OverAllowance> {
        let secs = i64::from(rule.window_secs.max(1));
        let window = now.timestamp().div_euclid(secs);
        let device = self.hasher.hash_one((license_id, machine));
        let shard = &self.shards[device as usize % SHARDS];
        let mut slots = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() > PRUNE_ABOVE {
            let now = now.timestamp();
            // A slot whose next window has ended can't extend its run.
            slots.retain(|_, slot| (slot.window + 2) * slot.secs > now);
        }
        let fresh = Slot { window, secs, calls: 0, run_before: 0 };
        let slot = slots.entry(device).or_insert(fresh);
        if slot.secs == secs && window < slot.window {
            // A call stamped before one already counted, overtaken on its
            // way here: counting it would throw the run away.
            return None;
        }
        if slot.window != window || slot.secs != secs {
            let continues = slot.secs == secs && slot.window + 1 == window && slot.over(rule.allowance);
            let run_before = if continues { slot.run_before.saturating_add(1) } else { 0 };
            *slot = Slot { run_before, ..fresh };
        }
        slot.calls = slot.calls.saturating_add(1);
        if slot.calls != rule.allowance.saturating_add(1) {
            return None;
        }
        let windows = slot.run_before.saturating_add(1);
        windows.is_multiple_of(rule.sustained.max(1)).then(|| OverAllowance {
            window_started_at: Utc.timestamp_opt(window * secs, 0).single().unwrap_or(now),
            calls: slot.calls,
            windows,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn machine() -> MachineHash {
        MachineHash::from_hex("ab".repeat(32))
    }

    const RULE: Allowance = Allowance { allowance: 2, window_secs: 60, sustained: 1 };

    #[test]
    fn the_call_past_the_allowance_is_reported_once_per_window() {
        let counter = CallCounter::default();
        let start = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let calls: Vec<_> =
            (0..5).map(|i| counter.count("l", &machine(), RULE, start + Duration::seconds(i))).collect();
        assert_eq!(calls[..2], [None, None]);
        assert_eq!(calls[2], Some(OverAllowance { window_started_at: start, calls: 3, windows: 1 }));
        assert_eq!(calls[3..], [None, None]);
        let next = start + Duration::seconds(60);
        assert_eq!(counter.count("l", &machine(), RULE, next), None, "a new window starts from zero");
    }

    #[test]
    fn devices_are_counted_apart() {
        let counter = CallCounter::default();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let rule = Allowance { allowance: 1, ..RULE };
        assert_eq!(counter.count("a", &machine(), rule, now), None);
        assert_eq!(counter.count("b", &machine(), rule, now), None);
        assert!(counter.count("a", &machine(), rule, now).is_some());
    }

    /// Calls `calls` times in each of the windows after `start`; what was
    /// reported, per window.
    fn windows_of(counter: &CallCounter, rule: Allowance, start: DateTime<Utc>, calls: &[u32]) -> Vec<Option<u32>> {
        calls
            .iter()
            .enumerate()
            .map(|(n, &calls)| {
                let at = start + Duration::seconds(n as i64 * i64::from(rule.window_secs));
                let reports: Vec<_> = (0..calls).filter_map(|_| counter.count("l", &machine(), rule, at)).collect();
                assert!(reports.len() <= 1, "at most one report per window");
                reports.first().map(|report| report.windows)
            })
            .collect()
    }

    #[test]
    fn a_run_is_reported_when_it_reaches_the_sustained_length_and_at_each_multiple() {
        let rule = Allowance { sustained: 3, ..RULE };
        let start = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let reported = windows_of(&CallCounter::default(), rule, start, &[5, 5, 5, 5, 5, 5, 5]);
        assert_eq!(reported, [None, None, Some(3), None, None, Some(6), None]);
    }

    #[test]
    fn a_late_call_from_the_window_before_does_not_end_the_run() {
        let rule = Allowance { sustained: 2, ..RULE };
        let counter = CallCounter::default();
        let start = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let second = start + Duration::seconds(60);
        for _ in 0..3 {
            counter.count("l", &machine(), rule, start);
        }
        counter.count("l", &machine(), rule, second);
        assert_eq!(counter.count("l", &machine(), rule, start + Duration::seconds(59)), None);
        let reports: Vec<_> = (0..2).filter_map(|_| counter.count("l", &machine(), rule, second)).collect();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].windows, 2, "the run went on");
    }

    #[test]
    fn a_window_within_the_allowance_or_a_silent_one_ends_the_run() {
        let rule = Allowance { sustained: 2, ..RULE };
        let start = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let within = windows_of(&CallCounter::default(), rule, start, &[5, 2, 5, 5]);
        assert_eq!(within, [None, None, None, Some(2)]);
        let silent = windows_of(&CallCounter::default(), rule, start, &[5, 0, 5, 5]);
        assert_eq!(silent, [None, None, None, Some(2)]);
    }
}
