//! The in-memory validation view: every license's current state, in each
//! process, so the validate hot path answers without a database round
//! trip.
//!
//! It is fed three ways: the process's own commands put the state they
//! produced; a follower of the log's tail applies every other process's
//! events (within tens of milliseconds); and validate puts what it confirmed
//! against the log when the view said no. An entry only ever moves forward
//! in version, whichever way it arrives.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use keyledger_domain::{License, LicenseKey};

/// A license as of `version`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub license: Arc<License>,
    pub version: i64,
    /// The chain hash of event `version`, when whoever put the entry knew
    /// it: a command can then be decided and appended from this entry
    /// alone (the append checks it against the log).
    pub last_hash: Option<[u8; 32]>,
}

impl Entry {
    pub fn last_hash_hex(&self) -> Option<String> {
        self.last_hash.map(hex::encode)
    }
}

/// Keyed by numbers rather than strings: a million licenses' ids and
/// keys as strings cost more than a hundred megabytes of their own.
#[derive(Default)]
struct Maps {
    /// By [`id_slot`].
    by_id: HashMap<u128, Entry>,
    /// [`LicenseKey::packed`] to [`id_slot`].
    id_by_key: HashMap<u128, u128>,
}

/// A license id as a number: its UUID's, or (for an id that is not a
/// UUID, as in tests) 128 bits of its SHA-256. Readers compare the id of
/// what they find, so even a collision could not answer for another
/// license.
fn id_slot(license_id: &str) -> u128 {
    if let Some(uuid) = parse_uuid(license_id) {
        return uuid;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(license_id.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 of 32 bytes"))
}

/// `8-4-4-4-12` hex digits, either case.
fn parse_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    u128::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 32)
}

#[derive(Default)]
pub struct MemoryView {
    maps: RwLock<Maps>,
}

impl MemoryView {
    pub fn get(&self, license_id: &str) -> Option<Entry> {
        self.read().by_id.get(&id_slot(license_id)).filter(|entry| entry.license.id == license_id).cloned()
    }

    pub fn get_by_key(&self, key: &LicenseKey) -> Option<Entry> {
        let maps = self.read();
        let entry = maps.id_by_key.get(&key.packed()).and_then(|slot| maps.by_id.get(slot));
        entry.filter(|entry| entry.license.license_key.as_ref() == Some(key)).cloned()
    }

    /// Records `license` as of `version` unless a newer version is there;
    /// `last_hash` is event `version`'s chain hash in hex, if known.
    pub fn put(&self, mut license: License, version: i64, last_hash: Option<&str>) {
        let Some(key) = license.license_key.as_ref().map(LicenseKey::packed) else { return };
        let slot = id_slot(&license.id);
        let last_hash = last_hash.and_then(|hash| {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hash, &mut bytes).ok().map(|()| bytes)
        });
        let mut maps = self.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = maps.by_id.get_mut(&slot) {
            if held.version > version {
                return;
            }
            if held.version == version {
                // Same state; keep whichever hash is known.
                held.last_hash = held.last_hash.or(last_hash);
                return;
            }
        }
        license.shrink_to_fit();
        maps.id_by_key.insert(key, slot);
        maps.by_id.insert(slot, Entry { license: Arc::new(license), version, last_hash });
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        // A panic while holding the lock can't leave the maps half-updated
        // (each update is two inserts of whole values), so carry on.
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use cqrs_es::Aggregate;
    use keyledger_domain::{LicenseEvent, LicenseType, Seats};

    fn license(id: &str, key: &str, max: i64) -> License {
        let mut license = License::default();
        license.apply(LicenseEvent::LicenseGenerated {
            license_id: id.into(),
            tenant_id: "t".into(),
            owner_id: "o".into(),
            license_key: LicenseKey::parse(key).unwrap(),
            license_type: LicenseType::Standard,
            max_activations: Seats::new(max).unwrap(),
            max_connections: None,
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            expires_at: Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()),
            expires_after_activation_secs: None,
            product_id: None,
            customer_id: None,
            features: Vec::new(),
            number: None,
            policy: Default::default(),
        });
        license
    }

    #[test]
    fn entries_are_found_by_id_and_key_and_never_move_back() {
        let view = MemoryView::default();
        let key = LicenseKey::parse("ABCD-EFGH-JKMN-2345").unwrap();
        view.put(license("l1", key.as_str(), 2), 2, None);
        assert_eq!(view.get_by_key(&key).unwrap().version, 2);
        view.put(license("l1", key.as_str(), 9), 1, None);
        assert_eq!(view.get("l1").unwrap().license.max_activations.get(), 2, "an older version is ignored");
        view.put(license("l1", key.as_str(), 5), 3, None);
        assert_eq!(view.get("l1").unwrap().license.max_activations.get(), 5);
        assert_eq!(view.get("l1").unwrap().last_hash, None);
        let hash = "ab".repeat(32);
        view.put(license("l1", key.as_str(), 7), 3, Some(&hash));
        let entry = view.get("l1").unwrap();
        assert_eq!(entry.license.max_activations.get(), 5, "the same version keeps its state");
        assert_eq!(entry.last_hash_hex(), Some(hash), "but learns the hash");
        assert_eq!(view.len(), 1);
    }
}
