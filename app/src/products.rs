//! Products in the catalog store: the `product_view` row of each, written
//! with its events. A tenant's live products have distinct codes (the
//! view's unique index refuses a taken one: [`CatalogError::Taken`]).

use keyledger_domain::{Product, ProductCommand, ProductError, ProductEvent};
use keyledger_eventlog::{SqlValue, PRODUCT_AGGREGATE};

use crate::aggregates::{sortable, CatalogAggregate, CatalogError, CatalogStore, Stored};

pub type ProductStore = CatalogStore<Product>;
pub type StoredProduct = Stored<Product>;
pub type ProductCommandError = CatalogError<ProductError>;

impl CatalogAggregate for Product {
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    const AGGREGATE_TYPE: &'static str = PRODUCT_AGGREGATE;
    /// Licenses are generated for a product's version.
    const GUARDED: bool = true;
    const TABLE: &'static str = "product_view";
    const ID_COLUMN: &'static str = "product_id";
    const INSERT_INTO: &'static str =
        "INSERT INTO product_view (product_id, tenant_id, code, created_at, deleted, version, last_hash, state)";
    const ON_CONFLICT: &'static str = "ON CONFLICT (product_id) DO UPDATE
   SET code = excluded.code, deleted = excluded.deleted, version = excluded.version,
       last_hash = excluded.last_hash, state = excluded.state
 WHERE product_view.version < excluded.version";

    fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        Product::decide(self, command)
    }

    fn apply(&mut self, event: ProductEvent) {
        Product::apply(self, event);
    }

    fn event_type(event: &ProductEvent) -> &'static str {
        event.event_type()
    }

    fn exists(&self) -> bool {
        Product::exists(self)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    fn view_values(&self) -> Vec<SqlValue> {
        vec![
            SqlValue::Text(self.tenant_id.to_string()),
            SqlValue::Text(self.code.clone()),
            SqlValue::Text(sortable(self.created_at)),
            SqlValue::Int(i64::from(self.deleted)),
        ]
    }
}

/// A product to create, its fields checked by the caller.
pub struct NewProduct {
    pub tenant_id: String,
    pub name: String,
    pub code: String,
    pub features: Vec<String>,
    pub key_format: keyledger_domain::KeyFormat,
    pub policy: keyledger_domain::Policy,
}

/// Creates `new` under a fresh id, recorded with `metadata` at `at`: a
/// taken code is [`crate::aggregates::CatalogError::Taken`].
pub async fn create_product(
    store: &ProductStore,
    new: NewProduct,
    metadata: &std::collections::HashMap<String, String>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<StoredProduct, ProductCommandError> {
    let product_id = uuid::Uuid::new_v4().to_string();
    let build = || ProductCommand::CreateProduct {
        product_id: keyledger_domain::ProductId::trusted(product_id.clone()),
        tenant_id: keyledger_domain::TenantId::trusted(new.tenant_id.clone()),
        name: new.name.clone(),
        code: new.code.clone(),
        features: new.features.clone(),
        key_format: new.key_format,
        policy: new.policy.clone(),
        at,
    };
    store.execute(&product_id, build, metadata).await
}
