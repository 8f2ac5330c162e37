//! The global search (the V2 License Server's, and the panel's box on
//! every page): customers by name or email, licenses by part of a key or
//! by a matching customer, devices by machine name or a hardware hash
//! prefix; any case, any part of a word, one tenant only.
//!
//! Customers are searched in their view (an index-backed `LIKE` over the
//! folded name and email); licenses and devices in the process's
//! validation view, which holds every license: one pass over the tenant's
//! licenses, the same on both backends, with no search index to keep.

use std::collections::HashSet;
use std::sync::Arc;

use keyledger_domain::{CustomerError, Device, License};

use crate::aggregates::CatalogError;
use crate::client::ClientService;
use crate::customers::{search_pattern, CustomerStore, StoredCustomer, SEARCH_FILTER};

/// Customers matched by name or email that licenses are looked up by.
const MAX_MATCHED_CUSTOMERS: i64 = 1000;

/// What a search looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Customer,
    License,
    Device,
}

/// Everything a search found, in full (callers page it): customers in
/// the view's order, licenses by number, devices with their license.
pub struct Found {
    pub customers: Vec<StoredCustomer>,
    pub licenses: Vec<Arc<License>>,
    pub devices: Vec<(Arc<License>, Device)>,
}

/// Searches the tenant for `q` (lower case, trimmed) among `kinds`.
pub async fn search(
    customers: &CustomerStore,
    client: &ClientService,
    tenant_id: &str,
    q: &str,
    kinds: &[Kind],
) -> Result<Found, CatalogError<CustomerError>> {
    // Customers whose name or email matches: found, and their licenses too.
    let matched = customers.page(tenant_id, 0, MAX_MATCHED_CUSTOMERS, SEARCH_FILTER, &search_pattern(q)).await?;
    let wants_licenses = kinds.contains(&Kind::License);
    let wants_devices = kinds.contains(&Kind::Device);
    let mut found = Found { customers: Vec::new(), licenses: Vec::new(), devices: Vec::new() };
    if wants_licenses || wants_devices {
        let matched_customers: HashSet<&str> = matched.iter().map(|c| c.record.id.as_str()).collect();
        // Keys are upper case ASCII and machine names mostly ASCII:
        // compared without making a lower-case copy of each.
        let upper = q.to_ascii_uppercase();
        let hex_like = q.bytes().all(|b| b.is_ascii_hexdigit());
        let key_matches = |license: &License| {
            license.license_key.as_ref().is_some_and(|key| key.as_str().contains(upper.as_str()))
                || license.customer_id.as_ref().is_some_and(|id| matched_customers.contains(id.as_str()))
        };
        let device_matches = |device: &Device| {
            contains_ignoring_case(device.machine_name.as_str(), q)
                || (hex_like && device.machine.hex().as_str().starts_with(q))
        };
        let customer_ids: Vec<&str> =
            if wants_licenses { matched_customers.iter().copied().collect() } else { Vec::new() };
        let search = keyledger_projections::Search {
            tenant_id,
            key_part: wants_licenses.then_some(upper.as_str()),
            customer_ids: &customer_ids,
        };
        let mut licenses = client
            .search_licenses(&search, |license| wants_devices && license.devices.iter().any(device_matches))
            .await;
        licenses.sort_by_key(|license| license.number);
        if wants_devices {
            for license in &licenses {
                for device in license.devices.iter().filter(|device| device_matches(device)) {
                    found.devices.push((license.clone(), device.clone()));
                }
            }
        }
        if wants_licenses {
            licenses.retain(|license| key_matches(license));
            found.licenses = licenses;
        }
    }
    if kinds.contains(&Kind::Customer) {
        found.customers = matched;
    }
    Ok(found)
}

/// Whether `text` holds `needle` (lower case), in any case.
fn contains_ignoring_case(text: &str, needle: &str) -> bool {
    if text.is_ascii() && needle.is_ascii() {
        let (text, needle) = (text.as_bytes(), needle.as_bytes());
        return needle.is_empty() || text.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle));
    }
    text.to_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_is_ignored_in_ascii_and_beyond() {
        assert!(contains_ignoring_case("Front Desk PC", "desk"));
        assert!(contains_ignoring_case("Ärztezimmer", "ärzte"));
        assert!(!contains_ignoring_case("Front", "back"));
    }
}
