//! Counting validate and heartbeat calls per device.
//!
//! Most of those calls write no event (a heartbeat reaches the log at most
//! once per interval), so the detector could not see a device calling in
//! a loop. The API counts each device's calls in fixed windows
//! (`excessiveHeartbeats.windowSecs`, aligned to the Unix epoch so every
//! process agrees on them), and the call that passes the allowance in a
//! window is handed to the log as one `LicenseCallRateExceeded` event; the
//! detector then looks for a run of such windows. Counts live in the
//! memory of each process: behind a load balancer a device's calls are
//! split between processes, and each counts its share.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use keyledger_domain::MachineHash;

const SHARDS: usize = 64;
/// A shard drops windows that ended when it holds more devices than this.
const PRUNE_ABOVE: usize = 4096;

/// A window in which a device passed its allowance, with the call count
/// at that moment (one over the allowance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverAllowance {
    pub window_started_at: DateTime<Utc>,
    pub calls: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The window's index in units of its own length.
    window: i64,
    /// When it ends, in Unix seconds: tenants' windows differ in length.
    ends: i64,
    calls: u32,
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
    /// Counts one call at `now`. Returns the window when this call is the
    /// first past `allowance` in it; every other call returns None.
    pub fn count(
        &self,
        license_id: &str,
        machine: &MachineHash,
        allowance: u32,
        window_secs: u32,
        now: DateTime<Utc>,
    ) -> Option<OverAllowance> {
        let window_secs = i64::from(window_secs.max(1));
        let window = now.timestamp().div_euclid(window_secs);
        let device = self.hasher.hash_one((license_id, machine));
        let shard = &self.shards[device as usize % SHARDS];
        let mut slots = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ends = (window + 1) * window_secs;
        if slots.len() > PRUNE_ABOVE {
            let now = now.timestamp();
            slots.retain(|_, slot| slot.ends > now);
        }
        let slot = slots.entry(device).or_insert(Slot { window, ends, calls: 0 });
        if slot.window != window || slot.ends != ends {
            *slot = Slot { window, ends, calls: 0 };
        }
        slot.calls = slot.calls.saturating_add(1);
        (slot.calls == allowance.saturating_add(1)).then(|| OverAllowance {
            window_started_at: Utc.timestamp_opt(window * window_secs, 0).single().unwrap_or(now),
            calls: slot.calls,
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

    #[test]
    fn the_call_past_the_allowance_is_reported_once_per_window() {
        let counter = CallCounter::default();
        let start = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let calls: Vec<_> =
            (0..5).map(|i| counter.count("l", &machine(), 2, 60, start + Duration::seconds(i))).collect();
        assert_eq!(calls[..2], [None, None]);
        assert_eq!(calls[2], Some(OverAllowance { window_started_at: start, calls: 3 }));
        assert_eq!(calls[3..], [None, None]);
        let next = start + Duration::seconds(60);
        assert_eq!(counter.count("l", &machine(), 2, 60, next), None, "a new window starts from zero");
    }

    #[test]
    fn devices_are_counted_apart() {
        let counter = CallCounter::default();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        assert_eq!(counter.count("a", &machine(), 1, 60, now), None);
        assert_eq!(counter.count("b", &machine(), 1, 60, now), None);
        assert!(counter.count("a", &machine(), 1, 60, now).is_some());
    }
}
