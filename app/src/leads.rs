//! Leads in the catalog store: one aggregate (and view row) a lead.

use keyledger_domain::{Lead, LeadCommand, LeadError, LeadEvent};
use keyledger_eventlog::SqlValue;

use crate::aggregates::{sortable, CatalogAggregate, CatalogStore, Stored};

pub type LeadStore = CatalogStore<Lead>;
pub type StoredLead = Stored<Lead>;

/// The aggregate type of leads in the log.
pub const LEAD_AGGREGATE: &str = "Lead";

impl CatalogAggregate for Lead {
    type Command = LeadCommand;
    type Event = LeadEvent;
    type Error = LeadError;

    const AGGREGATE_TYPE: &'static str = LEAD_AGGREGATE;
    const TABLE: &'static str = "lead_view";
    const ID_COLUMN: &'static str = "lead_id";
    const INSERT_INTO: &'static str =
        "INSERT INTO lead_view (lead_id, tenant_id, lead_type, number, created_at, deleted, version, last_hash, state)";
    const ON_CONFLICT: &'static str = "ON CONFLICT (lead_id) DO UPDATE
   SET lead_type = excluded.lead_type, deleted = excluded.deleted, version = excluded.version,
       last_hash = excluded.last_hash, state = excluded.state
 WHERE lead_view.version < excluded.version";

    fn decide(&self, command: LeadCommand) -> Result<Vec<LeadEvent>, LeadError> {
        Lead::decide(self, command)
    }

    fn apply(&mut self, event: LeadEvent) {
        Lead::apply(self, event);
    }

    fn event_type(event: &LeadEvent) -> &'static str {
        event.event_type()
    }

    fn exists(&self) -> bool {
        Lead::exists(self)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tenant_id(&self) -> &str {
        self.tenant_id.as_str()
    }

    fn view_values(&self) -> Vec<SqlValue> {
        vec![
            SqlValue::Text(self.tenant_id.to_string()),
            SqlValue::Text(self.r#type.clone()),
            SqlValue::Int(self.number),
            SqlValue::Text(sortable(self.created_at)),
            SqlValue::Int(i64::from(self.deleted)),
        ]
    }
}

/// Why a lead was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateLeadError {
    #[error("numbering the lead failed")]
    Serial(#[source] sqlx::Error),
    #[error(transparent)]
    Store(#[from] crate::aggregates::CatalogError<LeadError>),
}

/// Creates a lead of the tenant (its fields checked by the caller) under
/// the next lead number, recorded with `metadata`.
pub async fn create_lead(
    store: &LeadStore,
    serials: &crate::serials::Serials,
    tenant_id: &str,
    new: crate::lead_csv::NewLead,
    metadata: &std::collections::HashMap<String, String>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Lead, CreateLeadError> {
    let number = serials.next(tenant_id, crate::serials::SerialKind::Lead).await.map_err(CreateLeadError::Serial)?;
    let id = uuid::Uuid::new_v4().to_string();
    let command = || LeadCommand::Create {
        id: id.clone(),
        tenant_id: keyledger_domain::TenantId::trusted(tenant_id.to_owned()),
        number,
        name: new.name.clone(),
        r#type: new.kind.clone(),
        contacts: new.contacts.clone(),
        at,
    };
    Ok(store.execute(&id, command, metadata).await?.record)
}
