//! Leads: institutions a vendor is selling to (a university, a company, a
//! government office…), with their contacts, the activities with them,
//! and their conversion once one becomes a customer. Each lead is an
//! aggregate of its own in the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CustomerId, TenantId};

/// Longest name, type, email, activity kind or note.
pub const MAX_LEAD_TEXT: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: String,
    pub tenant_id: TenantId,
    pub number: i64,
    pub name: String,
    /// Free text such as `university`, `company` or `government`.
    pub r#type: String,
    pub contacts: Vec<Contact>,
    pub activities: Vec<Activity>,
    /// The customer it became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_to: Option<CustomerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub enum LeadCommand {
    Create {
        id: String,
        tenant_id: TenantId,
        number: i64,
        name: String,
        r#type: String,
        contacts: Vec<Contact>,
        at: DateTime<Utc>,
    },
    Update {
        name: Option<String>,
        r#type: Option<String>,
        at: DateTime<Utc>,
    },
    AddContact {
        contact: Contact,
        at: DateTime<Utc>,
    },
    RecordActivity {
        activity: Activity,
    },
    Convert {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeadEvent {
    LeadCreated {
        id: String,
        tenant_id: TenantId,
        number: i64,
        name: String,
        r#type: String,
        contacts: Vec<Contact>,
        created_at: DateTime<Utc>,
    },
    LeadUpdated {
        name: String,
        r#type: String,
        updated_at: DateTime<Utc>,
    },
    LeadContactAdded {
        contact: Contact,
        added_at: DateTime<Utc>,
    },
    LeadActivityRecorded {
        activity: Activity,
    },
    LeadConverted {
        customer_id: CustomerId,
        converted_at: DateTime<Utc>,
    },
    LeadDeleted {
        deleted_at: DateTime<Utc>,
    },
}

impl LeadEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::LeadCreated { .. } => "LeadCreated",
            Self::LeadUpdated { .. } => "LeadUpdated",
            Self::LeadContactAdded { .. } => "LeadContactAdded",
            Self::LeadActivityRecorded { .. } => "LeadActivityRecorded",
            Self::LeadConverted { .. } => "LeadConverted",
            Self::LeadDeleted { .. } => "LeadDeleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    #[error("Lead not found")]
    NotFound,
    #[error("Lead already exists")]
    AlreadyExists,
    #[error("The lead became a customer already")]
    AlreadyConverted,
}

/// A lead's text field checked: 1 to 200 characters of display text.
pub fn parse_lead_text(raw: &str) -> Result<String, &'static str> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > MAX_LEAD_TEXT {
        return Err("must be 1 to 200 characters");
    }
    crate::check_display_text(text).map_err(|_| "must not contain control or direction characters")?;
    Ok(text.to_owned())
}

impl Lead {
    pub fn exists(&self) -> bool {
        self.created_at.is_some() && !self.deleted
    }

    pub fn decide(&self, command: LeadCommand) -> Result<Vec<LeadEvent>, LeadError> {
        if let LeadCommand::Create { id, tenant_id, number, name, r#type, contacts, at } = command {
            if self.created_at.is_some() {
                return Err(LeadError::AlreadyExists);
            }
            return Ok(vec![LeadEvent::LeadCreated { id, tenant_id, number, name, r#type, contacts, created_at: at }]);
        }
        if !self.exists() {
            return Err(LeadError::NotFound);
        }
        Ok(match command {
            LeadCommand::Create { .. } => unreachable!("handled above"),
            LeadCommand::Update { name, r#type, at } => {
                let name = name.unwrap_or_else(|| self.name.clone());
                let r#type = r#type.unwrap_or_else(|| self.r#type.clone());
                if name == self.name && r#type == self.r#type {
                    return Ok(vec![]);
                }
                vec![LeadEvent::LeadUpdated { name, r#type, updated_at: at }]
            }
            LeadCommand::AddContact { contact, at } => vec![LeadEvent::LeadContactAdded { contact, added_at: at }],
            LeadCommand::RecordActivity { activity } => vec![LeadEvent::LeadActivityRecorded { activity }],
            LeadCommand::Convert { customer_id, at } => {
                if self.converted_to.is_some() {
                    return Err(LeadError::AlreadyConverted);
                }
                vec![LeadEvent::LeadConverted { customer_id, converted_at: at }]
            }
            LeadCommand::Delete { at } => vec![LeadEvent::LeadDeleted { deleted_at: at }],
        })
    }

    pub fn apply(&mut self, event: LeadEvent) {
        match event {
            LeadEvent::LeadCreated { id, tenant_id, number, name, r#type, contacts, created_at } => {
                *self = Lead {
                    id,
                    tenant_id,
                    number,
                    name,
                    r#type,
                    contacts,
                    created_at: Some(created_at),
                    ..Lead::default()
                };
            }
            LeadEvent::LeadUpdated { name, r#type, .. } => {
                self.name = name;
                self.r#type = r#type;
            }
            LeadEvent::LeadContactAdded { contact, .. } => self.contacts.push(contact),
            LeadEvent::LeadActivityRecorded { activity } => self.activities.push(activity),
            LeadEvent::LeadConverted { customer_id, converted_at } => {
                self.converted_to = Some(customer_id);
                self.converted_at = Some(converted_at);
            }
            LeadEvent::LeadDeleted { .. } => self.deleted = true,
        }
    }
}
