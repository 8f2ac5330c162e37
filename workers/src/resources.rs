//! Lets a license's resources go when it is suspended or deleted, however
//! that happened (an administrator on any API, an anomaly detector): a
//! consumer of the log that, for each `LicenseSuspended` and
//! `LicenseDeleted`, releases what the license holds in its tenant's pool.
//! Idempotent: a license that holds nothing (its resources released in
//! the request that suspended it, or an event handed over again) changes
//! nothing.

use chrono::Utc;
use keyledger_app::client::error_chain;
use keyledger_app::metadata::system_metadata;
use keyledger_app::resources::ResourceStore;
use keyledger_domain::ResourceCommand;

use crate::feed::{flush, AnyFeed, Feed, Source};
use crate::runtime::{Consumer, ConsumerError, Step};

/// Its name in `/health` and `/metrics`, and its checkpoint's.
pub const RESOURCE_RELEASER: &str = "resource-releaser";
const BATCH: usize = 500;

pub struct ResourceReleaser {
    source: Source,
    resources: ResourceStore,
    feed: Option<AnyFeed>,
}

impl ResourceReleaser {
    pub fn new(source: Source, resources: ResourceStore) -> Self {
        Self { source, resources, feed: None }
    }

    async fn release(&self, tenant_id: &str, license_id: &str) -> Result<(), ConsumerError> {
        let Some(pool) = self.resources.get(tenant_id).await.map_err(|e| format!("resource pool: {e:?}"))? else {
            return Ok(());
        };
        if pool.record.held_by(license_id).next().is_none() {
            return Ok(());
        }
        let at = Utc::now();
        let metadata = system_metadata(tenant_id, RESOURCE_RELEASER, at);
        let release = || ResourceCommand::ReleaseAll { license_id: license_id.to_owned(), at };
        match self.resources.execute(tenant_id, release, &metadata).await {
            Ok(_) => {
                tracing::info!(tenant_id, license_id, "resources of a suspended or deleted license released");
                Ok(())
            }
            Err(keyledger_app::aggregates::CatalogError::Store(error)) => Err(error.into()),
            Err(other) => {
                tracing::warn!(tenant_id, license_id, error = ?other, "resources not released");
                Ok(())
            }
        }
    }
}

impl Consumer for ResourceReleaser {
    async fn start(&mut self) -> Result<(), ConsumerError> {
        self.feed = Some(AnyFeed::open(&self.source, RESOURCE_RELEASER).await?);
        Ok(())
    }

    async fn stop(&mut self) {
        flush(self.feed.as_mut(), RESOURCE_RELEASER).await;
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let mut feed = self.feed.take().ok_or("no feed")?;
        let outcome = async {
            let batch = feed.next_batch(BATCH).await?;
            for envelope in &batch {
                let kind = envelope["type"].as_str().unwrap_or_default();
                if !matches!(kind, "LicenseSuspended" | "LicenseDeleted") {
                    continue;
                }
                if let (Some(tenant_id), Some(license_id)) =
                    (envelope["tenantId"].as_str(), envelope["licenseId"].as_str())
                {
                    if let Err(error) = self.release(tenant_id, license_id).await {
                        tracing::warn!(error = %error_chain(error.as_ref()), "releasing resources failed; retried");
                        return Err(error);
                    }
                }
            }
            feed.ack().await?;
            Ok::<_, ConsumerError>(if batch.len() == BATCH { Step::Busy } else { Step::Idle })
        }
        .await;
        self.feed = Some(feed);
        outcome
    }
}
