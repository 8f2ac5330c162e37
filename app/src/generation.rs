//! Generating a license, as every dialect does it: the license starts from
//! its product (its policy and key format), and is written only while the
//! product is still at the version it was decided on, so a license is never
//! generated for a product deleted (or changed) meanwhile, by this process
//! or another. A product that changed is read again.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use keyledger_domain::{
    CustomerId, License, LicenseCommand, LicenseId, LicenseKey, LicenseType, OwnerId, Policy, Product, Seats, TenantId,
};
use keyledger_eventlog::{Guard, PRODUCT_AGGREGATE};
use rand::rngs::OsRng;

use crate::products::StoredProduct;
use crate::service::{CommandError, LicenseService};

/// Times a generation reads its product again after the product changed
/// under it, before it gives up with [`CommandError::GuardMoved`].
pub const ATTEMPTS: u32 = 3;

/// What a license is generated with, besides what its product decides.
pub struct NewLicense {
    pub license_id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub license_type: LicenseType,
    pub max_activations: Seats,
    pub max_connections: Option<u32>,
    /// Fixed when the license is generated: `now` is the instant of the
    /// attempt that writes it.
    pub expires_at: Box<dyn Fn(DateTime<Utc>) -> Option<DateTime<Utc>> + Send + Sync>,
    pub expires_after_activation_secs: Option<i64>,
    pub features: Vec<String>,
    pub customer_id: Option<CustomerId>,
    pub number: Option<i64>,
}

impl NewLicense {
    /// A license with one seat, no expiry, no product-independent features.
    pub fn new(license_id: String, tenant_id: &str, owner_id: &str) -> Self {
        Self {
            license_id,
            tenant_id: tenant_id.to_owned(),
            owner_id: owner_id.to_owned(),
            license_type: LicenseType::Standard,
            max_activations: Seats::ONE,
            max_connections: None,
            expires_at: Box::new(|_| None),
            expires_after_activation_secs: None,
            features: Vec::new(),
            customer_id: None,
            number: None,
        }
    }

    /// Expiring at a fixed instant.
    pub fn expiring_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = Box::new(move |_| at);
        self
    }
}

/// Generates `new` for the product `read_product` answers (read again on
/// every attempt; `None` for a license without one). `policy` derives the
/// license's policy from the product's (the default policy without one);
/// `metadata` gives the event's metadata at the attempt's instant.
pub async fn generate<E, Read>(
    licenses: &LicenseService,
    new: &NewLicense,
    read_product: impl Fn() -> Read,
    policy: impl Fn(&Policy) -> Result<Policy, E>,
    metadata: impl Fn(DateTime<Utc>) -> HashMap<String, String>,
) -> Result<License, E>
where
    E: From<CommandError>,
    Read: Future<Output = Result<Option<StoredProduct>, E>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let product = read_product().await?;
        let guard = product.as_ref().map(|stored| Guard {
            aggregate_type: PRODUCT_AGGREGATE.to_owned(),
            aggregate_id: stored.record.id.to_string(),
            sequence: stored.version,
        });
        let product: Option<Product> = product.map(|stored| stored.record);
        let policy = policy(&product.as_ref().map(|product| product.policy.clone()).unwrap_or_default())?;
        let now = Utc::now();
        let format = product.as_ref().map(|product| product.key_format).unwrap_or_default();
        let command = LicenseCommand::GenerateLicense {
            license_id: LicenseId::trusted(new.license_id.clone()),
            tenant_id: TenantId::trusted(new.tenant_id.clone()),
            owner_id: OwnerId::trusted(new.owner_id.clone()),
            license_key: LicenseKey::generate(&mut OsRng, format),
            license_type: new.license_type,
            max_activations: new.max_activations,
            max_connections: new.max_connections,
            expires_at: (new.expires_at)(now),
            expires_after_activation_secs: new.expires_after_activation_secs,
            product_id: product.map(|product| product.id),
            features: new.features.clone(),
            customer_id: new.customer_id.clone(),
            number: new.number,
            policy,
            at: now,
        };
        match licenses.execute_guarded(&new.license_id, command, metadata(now), guard).await {
            Err(CommandError::GuardMoved) if attempts < ATTEMPTS => continue,
            outcome => return Ok(outcome?),
        }
    }
}
