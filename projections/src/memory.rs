//! The in-memory validation view: every license's current state, in each
//! process, so the validate hot path answers without a database round
//! trip.
//!
//! It is fed three ways: the process's own commands put the state they
//! produced; a follower of the log's tail applies every other process's
//! events (within tens of milliseconds); and validate puts what it confirmed
//! against the log when the view said no. An entry only ever moves forward
//! in version, whichever way it arrives.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use hashbrown::hash_table::{self, HashTable};

use keyledger_domain::{License, LicenseKey, OwnerId, ProductId, TenantId};

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

/// Each license is one row, found from two hash tables, by id and by key.
/// The tables hold only the row's index (5 bytes a slot with the control
/// byte): a table of a million licenses has two million slots, so keys or
/// pointers stored in the slots themselves cost tens of bytes a license
/// more. Hashes are keyed per process, so no one can choose ids or keys
/// that collide.
#[derive(Default)]
struct Maps {
    by_id: HashTable<u32>,
    by_key: HashTable<u32>,
    /// Every license, one row each in the order they were first put
    /// (licenses are never taken out): a scan of a tenant's licenses reads
    /// this vector in order, comparing the row's own fields before it
    /// opens a license.
    rows: Vec<Row>,
    hasher: RandomState,
    /// One copy of each tenant's, owner's and product's id for all the
    /// licenses that name it.
    shared: SharedIds,
}

/// Ids many licenses hold, each kept once.
#[derive(Default)]
struct SharedIds {
    tenants: HashSet<TenantId>,
    owners: HashSet<OwnerId>,
    products: HashSet<ProductId>,
}

impl SharedIds {
    fn share(&mut self, license: &mut License) {
        fn one<T: Clone + Eq + std::hash::Hash>(kept: &mut HashSet<T>, id: &mut T) {
            match kept.get(id) {
                Some(held) => *id = held.clone(),
                None => {
                    kept.insert(id.clone());
                }
            }
        }
        one(&mut self.tenants, &mut license.tenant_id);
        one(&mut self.owners, &mut license.owner_id);
        if let Some(product) = license.product_id.as_mut() {
            one(&mut self.products, product);
        }
    }
}

/// The longest license key (`XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`).
const MAX_KEY_LEN: usize = 29;

/// A license as of `version`, and what a scan of a tenant's licenses looks
/// at first. The hashes may collide; a license they select is checked
/// against its own fields. About 100 bytes.
struct Row {
    license: Arc<License>,
    version: i64,
    tenant: u64,
    /// The customer's id hashed; 0 for none.
    customer: u64,
    last_hash: Option<[u8; 32]>,
    key: [u8; MAX_KEY_LEN],
    key_len: u8,
    deleted: bool,
    has_devices: bool,
}

impl Row {
    fn new(hasher: &RandomState, license: Arc<License>, version: i64, last_hash: Option<[u8; 32]>) -> Self {
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
            license,
            version,
            last_hash,
        }
    }

    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }

    fn entry(&self) -> Entry {
        Entry { license: self.license.clone(), version: self.version, last_hash: self.last_hash }
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

    fn find_by_id(&self, license_id: &str) -> Option<u32> {
        let rows = &self.rows;
        self.by_id.find(self.id_hash(license_id), |&row| rows[row as usize].license.id == license_id).copied()
    }

    fn find_by_key(&self, key: &LicenseKey) -> Option<&Row> {
        let rows = &self.rows;
        let found =
            self.by_key.find(self.key_hash(key), |&row| rows[row as usize].license.license_key.as_ref() == Some(key));
        found.map(|&row| &rows[row as usize])
    }

    /// Puts `row` in place of the row `held` (the same license's), or as
    /// a new license, and files it under its key.
    fn insert(&mut self, held: Option<u32>, row: Row, key: &LicenseKey) {
        let Maps { by_id, by_key, rows, hasher, .. } = self;
        let key_hash = |rows: &[Row], index: &u32| {
            hasher.hash_one(rows[*index as usize].license.license_key.as_ref().map_or(0, LicenseKey::packed))
        };
        let index = match held {
            Some(index) => {
                let old = std::mem::replace(&mut rows[index as usize], row);
                match old.license.license_key.as_ref() {
                    Some(old_key) if old_key == key => return, // filed under its key already
                    Some(old_key) => {
                        let found = by_key.find_entry(hasher.hash_one(old_key.packed()), |&held| held == index);
                        if let Ok(found) = found {
                            found.remove();
                        }
                    }
                    None => {}
                }
                index
            }
            None => {
                let index = u32::try_from(rows.len()).expect("fewer than 4 billion licenses in one process");
                let id_hash = hasher.hash_one(id_slot(&row.license.id));
                rows.push(row);
                let rows = &*rows;
                by_id.insert_unique(id_hash, index, |held| hasher.hash_one(id_slot(&rows[*held as usize].license.id)));
                index
            }
        };
        let rows = &*rows;
        match by_key.entry(
            hasher.hash_one(key.packed()),
            |&held| rows[held as usize].license.license_key.as_ref() == Some(key),
            |held| key_hash(rows, held),
        ) {
            // Keys are unique: another license's key taken over would be
            // a log that gave two licenses one key, and the newest wins.
            hash_table::Entry::Occupied(mut held) => *held.get_mut() = index,
            hash_table::Entry::Vacant(slot) => {
                slot.insert(index);
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
        let maps = self.read();
        maps.find_by_id(license_id).map(|row| maps.rows[row as usize].entry())
    }

    pub fn get_by_key(&self, key: &LicenseKey) -> Option<Entry> {
        self.read().find_by_key(key).map(Row::entry)
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
        let held = maps.find_by_id(&license.id);
        if let Some(index) = held {
            let held = &mut maps.rows[index as usize];
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
        maps.shared.share(&mut license);
        let row = Row::new(&maps.hasher, Arc::new(license), version, last_hash);
        maps.insert(held, row, &key);
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
            .map(|row| &row.license)
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
                let license = &row.license;
                needle.is_some_and(|needle| row.key().windows(needle.len()).any(|part| part == needle))
                    || (row.customer != 0 && customers.contains(&row.customer) && of_customer(license))
                    || (row.has_devices && devices(license))
            })
            .map(|row| &row.license)
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
    fn licenses_of_one_tenant_share_one_copy_of_its_ids() {
        let view = MemoryView::default();
        view.put(license("l1", "ABCD-EFGH-JKMN-2345", 1), 1, None);
        view.put(license("l2", "WXYZ-EFGH-PQRS-6789", 1), 1, None);
        let (one, two) = (view.get("l1").unwrap().license, view.get("l2").unwrap().license);
        assert_eq!(one.tenant_id.as_str().as_ptr(), two.tenant_id.as_str().as_ptr(), "one tenant id");
        assert_eq!(one.owner_id.as_str().as_ptr(), two.owner_id.as_str().as_ptr(), "one owner id");
        // A new version of a license is shared the same way.
        view.put(license("l1", "ABCD-EFGH-JKMN-2345", 3), 2, None);
        let newer = view.get("l1").unwrap().license;
        assert_eq!(newer.tenant_id.as_str().as_ptr(), two.tenant_id.as_str().as_ptr());
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
