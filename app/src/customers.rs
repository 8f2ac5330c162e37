//! Customers in the catalog store: the `customer_view` row of each,
//! written with its events, with its name and email in lower case for
//! search.

use keyledger_domain::{Customer, CustomerCommand, CustomerError, CustomerEvent};
use keyledger_eventlog::{SqlValue, CUSTOMER_AGGREGATE};

use crate::aggregates::{sortable, CatalogAggregate, CatalogError, CatalogStore, Stored};

pub type CustomerStore = CatalogStore<Customer>;
pub type StoredCustomer = Stored<Customer>;
pub type CustomerCommandError = CatalogError<CustomerError>;

/// The longest search text.
pub const MAX_QUERY_LEN: usize = 200;

impl CatalogAggregate for Customer {
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;

    const AGGREGATE_TYPE: &'static str = CUSTOMER_AGGREGATE;
    const TABLE: &'static str = "customer_view";
    const ID_COLUMN: &'static str = "customer_id";
    const INSERT_INTO: &'static str = "INSERT INTO customer_view (customer_id, tenant_id, name_folded, email_folded, created_at, deleted, number, version, last_hash, state)";
    const ON_CONFLICT: &'static str = "ON CONFLICT (customer_id) DO UPDATE
   SET name_folded = excluded.name_folded, email_folded = excluded.email_folded, deleted = excluded.deleted,
       number = excluded.number,
       version = excluded.version, last_hash = excluded.last_hash, state = excluded.state
 WHERE customer_view.version < excluded.version";

    fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        Customer::decide(self, command)
    }

    fn apply(&mut self, event: CustomerEvent) {
        Customer::apply(self, event);
    }

    fn event_type(event: &CustomerEvent) -> &'static str {
        event.event_type()
    }

    fn exists(&self) -> bool {
        Customer::exists(self)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    fn view_values(&self) -> Vec<SqlValue> {
        let folded = |text: &Option<String>| text.as_deref().unwrap_or_default().to_lowercase();
        vec![
            SqlValue::Text(self.tenant_id.to_string()),
            SqlValue::Text(folded(&self.fields.name)),
            SqlValue::Text(folded(&self.fields.email)),
            SqlValue::Text(sortable(self.created_at)),
            SqlValue::Int(i64::from(self.deleted)),
            SqlValue::Int(self.number.unwrap_or_default()),
        ]
    }
}

/// The `LIKE` pattern that finds `query` anywhere in a folded name or
/// email: lower case, with `%`, `_` and `\` taken literally.
pub fn search_pattern(query: &str) -> String {
    let mut pattern = String::from("%");
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The filter for [`CatalogStore::list`] that [`search_pattern`] binds.
pub const SEARCH_FILTER: &str = r"name_folded LIKE $4 ESCAPE '\' OR email_folded LIKE $4 ESCAPE '\'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_takes_wildcards_literally() {
        assert_eq!(search_pattern("Ada"), "%ada%");
        assert_eq!(search_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
