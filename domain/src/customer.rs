//! The `Customer` aggregate: who a vendor sells licenses to (a person or a
//! company's contact), found by name or email. Its own stream and hash
//! chain in the log, like a product's; licenses name it by `customer_id`.

use crate::{CustomerId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::text::check_display_text;

/// Longest customer or company name.
pub const MAX_CUSTOMER_NAME_LEN: usize = 200;
/// RFC 5321's longest address.
pub const MAX_EMAIL_LEN: usize = 254;
/// Most keys in a customer's metadata.
pub const MAX_METADATA_KEYS: usize = 64;
/// Longest metadata key.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Most bytes of a customer's metadata as compact JSON.
pub const MAX_METADATA_BYTES: usize = 8192;

/// What a vendor says about a customer: at least a name or an email.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Free-form, the vendor's own (a CRM id, a plan name).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub tenant_id: TenantId,
    /// Its per-tenant serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    #[serde(flatten)]
    pub fields: CustomerFields,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    CustomerCreated {
        customer_id: CustomerId,
        tenant_id: TenantId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<i64>,
        #[serde(flatten)]
        fields: CustomerFields,
        created_at: DateTime<Utc>,
    },
    /// The resulting values of an edit, not a diff.
    CustomerUpdated {
        #[serde(flatten)]
        fields: CustomerFields,
        updated_at: DateTime<Utc>,
    },
    CustomerDeleted {
        deleted_at: DateTime<Utc>,
    },
}

impl CustomerEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::CustomerCreated { .. } => "CustomerCreated",
            Self::CustomerUpdated { .. } => "CustomerUpdated",
            Self::CustomerDeleted { .. } => "CustomerDeleted",
        }
    }
}

/// An edit: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerChanges {
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub company: Option<Option<String>>,
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    CreateCustomer {
        customer_id: CustomerId,
        tenant_id: TenantId,
        number: Option<i64>,
        fields: CustomerFields,
        at: DateTime<Utc>,
    },
    UpdateCustomer {
        changes: CustomerChanges,
        at: DateTime<Utc>,
    },
    DeleteCustomer {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("Customer not found")]
    NotFound,
    #[error("Customer already exists")]
    AlreadyExists,
    /// An edit would leave it with neither a name nor an email.
    #[error("A customer needs a name or an email")]
    Anonymous,
}

/// Why a customer's field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerFieldError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must be an address like name@example.com")]
    BadEmail,
    #[error("may hold at most {MAX_METADATA_KEYS} keys of 1 to {MAX_METADATA_KEY_LEN} characters")]
    MetadataKeys,
    #[error("must be at most {MAX_METADATA_BYTES} bytes as JSON")]
    MetadataTooLarge,
    #[error("{0}")]
    Text(#[from] crate::TextError),
}

/// A customer's or company's name: trimmed, 1 to 200 characters of
/// display text.
pub fn parse_customer_name(raw: &str) -> Result<String, CustomerFieldError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(CustomerFieldError::Empty);
    }
    if name.chars().count() > MAX_CUSTOMER_NAME_LEN {
        return Err(CustomerFieldError::TooLong(MAX_CUSTOMER_NAME_LEN));
    }
    check_display_text(name)?;
    Ok(name.to_owned())
}

/// An email address, trimmed: one `@` between a local part and a domain
/// with a dot, no spaces, at most 254 characters. Kept as given; search
/// ignores case. Whether it receives mail is not checked.
pub fn parse_email(raw: &str) -> Result<String, CustomerFieldError> {
    let email = raw.trim();
    if email.is_empty() {
        return Err(CustomerFieldError::Empty);
    }
    if email.chars().count() > MAX_EMAIL_LEN {
        return Err(CustomerFieldError::TooLong(MAX_EMAIL_LEN));
    }
    check_display_text(email)?;
    let Some((local, domain)) = email.split_once('@') else { return Err(CustomerFieldError::BadEmail) };
    let well_formed = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace);
    if !well_formed {
        return Err(CustomerFieldError::BadEmail);
    }
    Ok(email.to_owned())
}

/// Free-form metadata: at most 64 keys of 1 to 64 characters, 8 KiB as
/// compact JSON.
pub fn check_metadata(metadata: &Map<String, Value>) -> Result<(), CustomerFieldError> {
    let keys_fit = metadata.len() <= MAX_METADATA_KEYS
        && metadata.keys().all(|key| !key.is_empty() && key.chars().count() <= MAX_METADATA_KEY_LEN);
    if !keys_fit {
        return Err(CustomerFieldError::MetadataKeys);
    }
    let bytes = serde_json::to_vec(metadata).map_or(usize::MAX, |json| json.len());
    if bytes > MAX_METADATA_BYTES {
        return Err(CustomerFieldError::MetadataTooLarge);
    }
    Ok(())
}

impl CustomerFields {
    fn identifies(&self) -> bool {
        self.name.is_some() || self.email.is_some()
    }
}

impl Customer {
    pub fn exists(&self) -> bool {
        !self.id.is_empty() && !self.deleted
    }

    pub fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        use CustomerCommand::*;
        use CustomerEvent::*;
        match command {
            CreateCustomer { customer_id, tenant_id, number, fields, at } => {
                if !self.id.is_empty() {
                    return Err(CustomerError::AlreadyExists);
                }
                if !fields.identifies() {
                    return Err(CustomerError::Anonymous);
                }
                Ok(vec![CustomerCreated { customer_id, tenant_id, number, fields, created_at: at }])
            }
            UpdateCustomer { changes, at } => {
                if !self.exists() {
                    return Err(CustomerError::NotFound);
                }
                let current = &self.fields;
                let fields = CustomerFields {
                    name: changes.name.unwrap_or_else(|| current.name.clone()),
                    email: changes.email.unwrap_or_else(|| current.email.clone()),
                    company: changes.company.unwrap_or_else(|| current.company.clone()),
                    metadata: changes.metadata.unwrap_or_else(|| current.metadata.clone()),
                };
                if !fields.identifies() {
                    return Err(CustomerError::Anonymous);
                }
                if fields == *current {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerUpdated { fields, updated_at: at }])
            }
            DeleteCustomer { at } => {
                if !self.exists() {
                    return Err(CustomerError::NotFound);
                }
                Ok(vec![CustomerDeleted { deleted_at: at }])
            }
        }
    }

    pub fn apply(&mut self, event: CustomerEvent) {
        use CustomerEvent::*;
        match event {
            CustomerCreated { customer_id, tenant_id, number, fields, created_at } => {
                *self = Customer {
                    id: customer_id,
                    tenant_id,
                    number,
                    fields,
                    created_at: Some(created_at),
                    updated_at: Some(created_at),
                    deleted: false,
                };
            }
            CustomerUpdated { fields, updated_at } => {
                self.fields = fields;
                self.updated_at = Some(updated_at);
            }
            CustomerDeleted { deleted_at } => {
                self.deleted = true;
                self.updated_at = Some(deleted_at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 22, 10, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn create(fields: CustomerFields) -> CustomerCommand {
        CustomerCommand::CreateCustomer {
            customer_id: CustomerId::trusted("c-1"),
            tenant_id: TenantId::trusted("t-1"),
            number: Some(1),
            fields,
            at: t(0),
        }
    }

    fn named() -> CustomerFields {
        CustomerFields { name: Some("Ada".into()), email: Some("ada@example.com".into()), ..Default::default() }
    }

    fn folded(commands: Vec<CustomerCommand>) -> Result<Customer, CustomerError> {
        let mut customer = Customer::default();
        for command in commands {
            for event in customer.decide(command)? {
                customer.apply(event);
            }
        }
        Ok(customer)
    }

    #[test]
    fn given_a_customer_when_edited_then_the_edit_names_the_resulting_values() {
        let changes = CustomerChanges { company: Some(Some("Acme".into())), ..Default::default() };
        let customer = folded(vec![create(named()), CustomerCommand::UpdateCustomer { changes, at: t(1) }]).unwrap();
        assert_eq!(customer.fields.company.as_deref(), Some("Acme"));
        assert_eq!(customer.fields.name.as_deref(), Some("Ada"), "a field left out keeps its value");
        assert_eq!(customer.updated_at, Some(t(1)));
        let same = CustomerChanges { name: Some(Some("Ada".into())), ..Default::default() };
        assert_eq!(customer.decide(CustomerCommand::UpdateCustomer { changes: same, at: t(2) }), Ok(vec![]));
    }

    #[test]
    fn a_customer_needs_a_name_or_an_email() {
        assert_eq!(folded(vec![create(CustomerFields::default())]), Err(CustomerError::Anonymous));
        let customer = folded(vec![create(named())]).unwrap();
        let clear_name = CustomerChanges { name: Some(None), ..Default::default() };
        assert!(customer.decide(CustomerCommand::UpdateCustomer { changes: clear_name, at: t(1) }).is_ok());
        let clear_both = CustomerChanges { name: Some(None), email: Some(None), ..Default::default() };
        assert_eq!(
            customer.decide(CustomerCommand::UpdateCustomer { changes: clear_both, at: t(1) }),
            Err(CustomerError::Anonymous)
        );
    }

    #[test]
    fn a_deleted_customer_takes_no_more_commands() {
        let deleted = folded(vec![create(named()), CustomerCommand::DeleteCustomer { at: t(1) }]).unwrap();
        assert!(!deleted.exists());
        assert_eq!(deleted.decide(CustomerCommand::DeleteCustomer { at: t(2) }), Err(CustomerError::NotFound));
        assert_eq!(deleted.decide(create(named())), Err(CustomerError::AlreadyExists), "ids are not reused");
    }

    #[test]
    fn events_read_back_flat() {
        let event = CustomerEvent::CustomerCreated {
            customer_id: CustomerId::trusted("c-1"),
            tenant_id: TenantId::trusted("t-1"),
            number: None,
            fields: named(),
            created_at: t(0),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["CustomerCreated"]["email"], "ada@example.com");
        assert_eq!(serde_json::from_value::<CustomerEvent>(json).unwrap(), event);
    }

    #[test]
    fn fields_are_checked() {
        assert_eq!(parse_email(" ada@example.com "), Ok("ada@example.com".to_owned()));
        for bad in ["ada", "@example.com", "ada@example", "ada@@example.com", "a da@example.com", "ada@example."] {
            assert_eq!(parse_email(bad), Err(CustomerFieldError::BadEmail), "{bad}");
        }
        assert_eq!(parse_customer_name("  "), Err(CustomerFieldError::Empty));
        assert_eq!(parse_customer_name("a\u{202e}b"), Err(CustomerFieldError::Text(crate::TextError::Bidi)));
        let mut metadata = Map::new();
        metadata.insert("crm".into(), Value::from("42"));
        assert_eq!(check_metadata(&metadata), Ok(()));
        metadata.insert(String::new(), Value::Null);
        assert_eq!(check_metadata(&metadata), Err(CustomerFieldError::MetadataKeys));
        let mut large = Map::new();
        large.insert("notes".into(), Value::from("x".repeat(MAX_METADATA_BYTES)));
        assert_eq!(check_metadata(&large), Err(CustomerFieldError::MetadataTooLarge));
    }
}
