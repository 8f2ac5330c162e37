//! The in-memory validation view: every license's current state, in each
//! process, so the validate hot path answers without a database round
//! trip.
//!
//! It is fed three ways: the process's own commands put the state they
//! produced; a follower of the log's tail applies every other process's
//! events (within tens of milliseconds); and validate puts what it confirmed
//! against the log when the view said no. An entry only ever moves forward
//! in version, whichever way it arrives.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use hashbrown::hash_table::{self, HashTable};

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
    /// The license's place in `Maps::rows`, the same in every version.
    row: u32,
}

impl Entry {
    pub fn last_hash_hex(&self) -> Option<String> {
        self.last_hash.map(hex::encode)
    }
}

/// Each license is one shared entry found from two hash tables, by id and
/// by key. The tables hold only a pointer each (9 bytes a slot with the
/// control byte): a table of a million entries has two million slots, so
/// keys and entries stored in the slots themselves cost over 200 bytes a
/// license. Hashes are keyed per process, so no one can choose ids or
/// keys that collide.
#[derive(Default)]
struct Maps {
    by_id: HashTable<Arc<Entry>>,
    by_key: HashTable<Arc<Entry>>,
    /// Every license's searchable fields, one row each in the order they
    /// were first put (licenses are never taken out): a scan of a tenant's
    /// licenses reads this vector in order instead of following three
    /// pointers per license (entry, license, tenant id). 64 bytes a
    /// license.
    rows: Vec<Row>,
    hasher: RandomState,
}

/// The longest license key (`XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`).
const MAX_KEY_LEN: usize = 29;

/// What a scan of a tenant's licenses looks at first. The hashes may
/// collide; a license they select is checked against its own fields.
struct Row {
    entry: Arc<Entry>,
    tenant: u64,
    /// The customer's id hashed; 0 for none.
    customer: u64,
    key: [u8; MAX_KEY_LEN],
    key_len: u8,
    deleted: bool,
    has_devices: bool,
}

impl Row {
    fn new(hasher: &RandomState, entry: Arc<Entry>) -> Self {
        let license = &entry.license;
        let mut key = [0u8; MAX_KEY_LEN];
        let text = license.license_key.as_ref().map_or("", |key| key.as_str()).as_bytes();
        let key_len = text.len().min(MAX_KEY_LEN);
        key[..key_len].copy_from_slice(&text[..key_len]);
        Row {
            tenant: hasher.hash_one(license.tenant_id.as_str()),
            customer: license.customer_id.as_ref().map_or(0, |id| hasher.hash_one(id.as_str())),
            key,
            key_len: key_len as u8,
            deleted: license.deleted,
            has_devices: !license.devices.is_empty(),
            entry,
        }
    }

    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }
}

/// What [`MemoryView::search`] looks for in one tenant's licenses.
pub struct Search<'a> {
    pub tenant_id: &'a str,
    /// Part of a license key, in upper case; `None` matches no key.
    pub key_part: Option<&'a str>,
    /// Licenses of these customers match.
    pub customer_ids: &'a [&'a str],
}

impl Maps {
    fn id_hash(&self, license_id: &str) -> u64 {
        self.hasher.hash_one(id_slot(license_id))
    }

    fn key_hash(&self, key: &LicenseKey) -> u64 {
        self.hasher.hash_one(key.packed())
    }

    fn find_by_id(&self, license_id: &str) -> Option<&Arc<Entry>> {
        self.by_id.find(self.id_hash(license_id), |entry| entry.license.id == license_id)
    }

    /// Puts `entry` in both tables, in place of what it replaces.
    fn insert(&mut self, entry: Arc<Entry>, key: &LicenseKey) {
        let row = Row::new(&self.hasher, entry.clone());
        match self.rows.get_mut(entry.row as usize) {
            Some(held) => *held = row,
            None => self.rows.push(row),
        }
        let Maps { by_id, by_key, hasher, .. } = self;
        let id_hash = hasher.hash_one(id_slot(&entry.license.id));
        let replaced = match by_id.entry(
            id_hash,
            |held| held.license.id == entry.license.id,
            |held| hasher.hash_one(id_slot(&held.license.id)),
        ) {
            hash_table::Entry::Occupied(mut held) => Some(std::mem::replace(held.get_mut(), entry.clone())),
            hash_table::Entry::Vacant(slot) => {
                slot.insert(entry.clone());
                None
            }
        };
        let rehash_key =
            |held: &Arc<Entry>| hasher.hash_one(held.license.license_key.as_ref().map_or(0, LicenseKey::packed));
        if let Some(old_key) = replaced.as_ref().and_then(|old| old.license.license_key.as_ref()) {
            if old_key != key {
                let old = replaced.as_ref().expect("replaced");
                if let Ok(found) = by_key.find_entry(hasher.hash_one(old_key.packed()), |held| Arc::ptr_eq(held, old)) {
                    found.remove();
                }
            }
        }
        match by_key.entry(
            hasher.hash_one(key.packed()),
            |held| held.license.license_key.as_ref() == Some(key),
            rehash_key,
        ) {
            hash_table::Entry::Occupied(mut held) => *held.get_mut() = entry,
            hash_table::Entry::Vacant(slot) => {
                slot.insert(entry);
            }
        }
    }
}

/// A license id as a number: its UUID's, or (for an id that is not a
/// UUID, as in tests) 128 bits of its SHA-256.
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
    let mut value = 0u128;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        value = value << 4 | u128::from((*byte as char).to_digit(16)?);
    }
    Some(value)
}

#[derive(Default)]
pub struct MemoryView {
    maps: RwLock<Maps>,
    /// Set while a process's start-up loads the view in the background:
    /// lookups by key or id that miss are asked of the store meanwhile,
    /// but a listing of a tenant's licenses must wait for the whole view.
    loading: AtomicBool,
    loaded: Notify,
}

impl MemoryView {
    /// Marks the view as being loaded: [`MemoryView::wait_loaded`] waits
    /// from now until [`MemoryView::finish_loading`].
    pub fn begin_loading(&self) {
        self.loading.store(true, Ordering::SeqCst);
    }

    pub fn finish_loading(&self) {
        self.loading.store(false, Ordering::SeqCst);
        self.loaded.notify_waiters();
    }

    pub fn is_loading(&self) -> bool {
        self.loading.load(Ordering::SeqCst)
    }

    /// Returns once the view holds every license (at once, unless a
    /// start-up is still loading it).
    pub async fn wait_loaded(&self) {
        loop {
            let notified = self.loaded.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read, so a finish in between
            // is not missed.
            notified.as_mut().enable();
            if !self.is_loading() {
                return;
            }
            notified.await;
        }
    }

    pub fn get(&self, license_id: &str) -> Option<Entry> {
        self.read().find_by_id(license_id).map(|entry| Entry::clone(entry))
    }

    pub fn get_by_key(&self, key: &LicenseKey) -> Option<Entry> {
        let maps = self.read();
        let found = maps.by_key.find(maps.key_hash(key), |entry| entry.license.license_key.as_ref() == Some(key));
        found.map(|entry| Entry::clone(entry))
    }

    /// Records `license` as of `version` unless a newer version is there;
    /// `last_hash` is event `version`'s chain hash in hex, if known.
    pub fn put(&self, mut license: License, version: i64, last_hash: Option<&str>) {
        let Some(key) = license.license_key.clone() else { return };
        let last_hash = last_hash.and_then(|hash| {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hash, &mut bytes).ok().map(|()| bytes)
        });
        let mut maps = self.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = maps.find_by_id(&license.id) {
            if held.version > version {
                return;
            }
            if held.version == version {
                // Same state; keep whichever hash is known.
                if held.last_hash.is_none() && last_hash.is_some() {
                    let learned = Arc::new(Entry { last_hash, ..Entry::clone(held) });
                    maps.insert(learned, &key);
                }
                return;
            }
        }
        let row = match maps.find_by_id(&license.id) {
            Some(held) => held.row,
            None => u32::try_from(maps.rows.len()).expect("fewer than 4 billion licenses in one process"),
        };
        license.shrink_to_fit();
        maps.insert(Arc::new(Entry { license: Arc::new(license), version, last_hash, row }), &key);
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Every license of the tenant held here (deleted ones included), for
    /// statistics. One pass over the whole view under its read lock:
    /// tens of milliseconds at a million licenses, which writers wait for.
    pub fn licenses_of_tenant(&self, tenant_id: &str) -> Vec<Arc<License>> {
        self.tenant_licenses_where(tenant_id, |_| true)
    }

    /// The tenant's licenses that pass `keep`, in one pass under the read
    /// lock: only those kept are copied out.
    pub fn tenant_licenses_where(&self, tenant_id: &str, mut keep: impl FnMut(&License) -> bool) -> Vec<Arc<License>> {
        let maps = self.read();
        let tenant = maps.hasher.hash_one(tenant_id);
        maps.rows
            .iter()
            .filter(|row| row.tenant == tenant)
            .map(|row| &row.entry.license)
            .filter(|license| license.tenant_id == tenant_id && keep(license))
            .cloned()
            .collect()
    }

    /// A tenant's licenses, deleted ones left out, whose key holds
    /// `search.key_part`, or whose customer is one of
    /// `search.customer_ids`, or that hold a seat on a device `devices`
    /// accepts. Keys and customers are compared in the rows, in order;
    /// only licenses with devices are opened for `devices`.
    pub fn search(&self, search: &Search<'_>, mut devices: impl FnMut(&License) -> bool) -> Vec<Arc<License>> {
        let maps = self.read();
        let tenant = maps.hasher.hash_one(search.tenant_id);
        let customers: Vec<u64> = search.customer_ids.iter().map(|id| maps.hasher.hash_one(*id)).collect();
        let needle = search.key_part.map(str::as_bytes).filter(|part| !part.is_empty());
        let of_customer = |license: &License| {
            license.customer_id.as_ref().is_some_and(|id| search.customer_ids.contains(&id.as_str()))
        };
        maps.rows
            .iter()
            .filter(|row| row.tenant == tenant && !row.deleted)
            .filter(|row| {
                let license = &row.entry.license;
                needle.is_some_and(|needle| row.key().windows(needle.len()).any(|part| part == needle))
                    || (row.customer != 0 && customers.contains(&row.customer) && of_customer(license))
                    || (row.has_devices && devices(license))
            })
            .map(|row| &row.entry.license)
            .filter(|license| license.tenant_id == search.tenant_id)
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        // A panic while holding the lock can't leave an entry half-written
        // (entries are replaced whole), so carry on.
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
            license_id: keyledger_domain::LicenseId::trusted(id),
            tenant_id: keyledger_domain::TenantId::trusted("t"),
            owner_id: keyledger_domain::OwnerId::trusted("o"),
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

    #[tokio::test]
    async fn listings_wait_while_the_view_loads_and_go_on_when_it_is_whole() {
        let view = Arc::new(MemoryView::default());
        tokio::time::timeout(std::time::Duration::from_secs(1), view.wait_loaded())
            .await
            .expect("a view nobody loads is whole");
        view.begin_loading();
        assert!(view.is_loading());
        let waiter = tokio::spawn({
            let view = view.clone();
            async move { view.wait_loaded().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "a listing waits while the view loads");
        view.finish_loading();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("the wait ends when loading does")
            .unwrap();
        assert!(!view.is_loading());
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

    #[test]
    fn every_entry_is_found_after_the_tables_grow_and_a_changed_key_leaves_no_trace() {
        let view = MemoryView::default();
        let keys: Vec<LicenseKey> =
            (0..2000).map(|_| LicenseKey::generate(&mut rand::thread_rng(), Default::default())).collect();
        for (n, key) in keys.iter().enumerate() {
            view.put(license(&format!("00000000-0000-4000-8000-{n:012}"), key.as_str(), 1), 1, None);
        }
        assert_eq!(view.len(), 2000);
        for (n, key) in keys.iter().enumerate() {
            let id = format!("00000000-0000-4000-8000-{n:012}");
            assert_eq!(view.get(&id).unwrap().license.id, id);
            assert_eq!(view.get_by_key(key).unwrap().license.id, id);
        }
        let new_key = LicenseKey::generate(&mut rand::thread_rng(), Default::default());
        view.put(license("00000000-0000-4000-8000-000000000007", new_key.as_str(), 1), 2, None);
        assert!(view.get_by_key(&keys[7]).is_none(), "the old key no longer answers");
        assert_eq!(view.get_by_key(&new_key).unwrap().version, 2);
        assert_eq!(view.len(), 2000);
    }

    #[test]
    fn a_search_finds_its_tenants_licenses_by_key_customer_and_device_and_an_update_keeps_one_row() {
        let view = MemoryView::default();
        let mut ours = license("l1", "ABCD-EFGH-JKMN-2345", 2);
        ours.customer_id = Some(keyledger_domain::CustomerId::trusted("c1"));
        view.put(ours.clone(), 1, None);
        view.put(license("l2", "WXYZ-EFGH-PQRS-6789", 2), 1, None);
        let mut theirs = license("l3", "ABCD-TUVW-PQRS-6789", 2);
        theirs.tenant_id = keyledger_domain::TenantId::trusted("other");
        view.put(theirs, 1, None);
        let found = |key_part: Option<&str>, customers: &[&str], devices: bool| {
            let search = Search { tenant_id: "t", key_part, customer_ids: customers };
            let mut ids: Vec<String> = view.search(&search, |_| devices).iter().map(|l| l.id.to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(found(Some("ABCD"), &[], false), ["l1"], "the other tenant's key is not searched");
        assert_eq!(found(Some("EFGH"), &[], false), ["l1", "l2"]);
        assert_eq!(found(Some("H-JK"), &[], false), ["l1"], "across a dash");
        assert_eq!(found(None, &["c1"], false), ["l1"]);
        assert_eq!(found(None, &["c2"], false), Vec::<String>::new());
        assert_eq!(found(None, &[], true), Vec::<String>::new(), "only licenses holding devices are asked");
        // A new version replaces the row: the new key is found, the old
        // one is not, and the view still has three rows.
        let mut changed = license("l1", "MNPQ-EFGH-JKMN-2345", 2);
        changed.deleted = false;
        view.put(changed, 2, None);
        assert_eq!(found(Some("ABCD"), &[], false), Vec::<String>::new());
        assert_eq!(found(Some("MNPQ"), &[], false), ["l1"]);
        assert_eq!(view.read().rows.len(), 3);
        let mut deleted = license("l2", "WXYZ-EFGH-PQRS-6789", 2);
        deleted.deleted = true;
        view.put(deleted, 2, None);
        assert_eq!(found(Some("EFGH"), &[], false), ["l1"], "a deleted license is not found");
        assert_eq!(view.tenant_licenses_where("t", |_| true).len(), 2, "but is still the tenant's");
    }
}
