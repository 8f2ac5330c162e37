//! Tenants' resource pools, in the catalog store: one aggregate (and one
//! view row) a tenant, whose id is the tenant's.

use keyledger_domain::{ResourceCommand, ResourceError, ResourceEvent, ResourcePool};
use keyledger_eventlog::SqlValue;

use crate::aggregates::{sortable, CatalogAggregate, CatalogStore, Stored};

pub type ResourceStore = CatalogStore<ResourcePool>;
pub type StoredPool = Stored<ResourcePool>;

/// The aggregate type of resource pools in the log.
pub const RESOURCE_POOL_AGGREGATE: &str = "ResourcePool";

impl CatalogAggregate for ResourcePool {
    type Command = ResourceCommand;
    type Event = ResourceEvent;
    type Error = ResourceError;

    const AGGREGATE_TYPE: &'static str = RESOURCE_POOL_AGGREGATE;
    const TABLE: &'static str = "resource_pool_view";
    const ID_COLUMN: &'static str = "pool_id";
    const INSERT_INTO: &'static str =
        "INSERT INTO resource_pool_view (pool_id, tenant_id, created_at, deleted, version, last_hash, state)";
    const ON_CONFLICT: &'static str = "ON CONFLICT (pool_id) DO UPDATE
   SET version = excluded.version, last_hash = excluded.last_hash, state = excluded.state
 WHERE resource_pool_view.version < excluded.version";

    fn decide(&self, command: ResourceCommand) -> Result<Vec<ResourceEvent>, ResourceError> {
        ResourcePool::decide(self, command)
    }

    fn apply(&mut self, event: ResourceEvent) {
        ResourcePool::apply(self, event);
    }

    fn event_type(event: &ResourceEvent) -> &'static str {
        event.event_type()
    }

    fn exists(&self) -> bool {
        ResourcePool::exists(self)
    }

    fn id(&self) -> &str {
        self.tenant_id.as_str()
    }

    fn tenant_id(&self) -> &str {
        self.tenant_id.as_str()
    }

    fn view_values(&self) -> Vec<SqlValue> {
        vec![SqlValue::Text(self.tenant_id.to_string()), SqlValue::Text(sortable(self.created_at)), SqlValue::Int(0)]
    }
}
