//! Switching a license off, on again, or deleting it, as staff do from
//! the V2 License Server's toggle and bulk operations and the panel's
//! bulk select. A license switched off is suspended (its devices keep
//! their seats, and come back when it is reinstated); a license switched
//! off or deleted lets its tenant's resources go, since it can no longer
//! use them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keyledger_domain::{License, LicenseCommand, LicenseStatus, ResourceCommand, ResourceError};

use crate::aggregates::CatalogError;
use crate::resources::ResourceStore;
use crate::service::LicenseService;
use crate::CommandError;

/// Why a switch did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    License(#[from] CommandError),
    #[error("the license changed, and its resources could not be released: {0}")]
    Resources(#[from] CatalogError<ResourceError>),
}

/// What to do to each of many licenses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bulk {
    /// Reinstate a suspended license.
    Activate,
    /// Suspend a license.
    Deactivate,
    /// Delete a license.
    Delete,
}

impl Bulk {
    /// The past tense, for messages.
    pub fn past(self) -> &'static str {
        match self {
            Bulk::Activate => "activated",
            Bulk::Deactivate => "deactivated",
            Bulk::Delete => "deleted",
        }
    }
}

/// The stores a switch changes, and the metadata of the events it
/// records (the caller, at an instant).
pub struct Switch<'a, M: Fn(DateTime<Utc>) -> HashMap<String, String>> {
    pub licenses: &'a LicenseService,
    pub resources: &'a ResourceStore,
    pub metadata: M,
}

impl<M: Fn(DateTime<Utc>) -> HashMap<String, String>> Switch<'_, M> {
    /// Does `bulk` to the license: its new state, or `None` when it was
    /// already so (switched on, or off).
    pub async fn apply(&self, license: &License, bulk: Bulk, reason: &str) -> Result<Option<License>, SwitchError> {
        match bulk {
            Bulk::Activate => self.set_active(license, true, reason).await,
            Bulk::Deactivate => self.set_active(license, false, reason).await,
            Bulk::Delete => self.delete(license).await.map(Some),
        }
    }

    /// Suspends the license (`active` false) or reinstates it; `None` when
    /// it already is.
    pub async fn set_active(
        &self,
        license: &License,
        active: bool,
        reason: &str,
    ) -> Result<Option<License>, SwitchError> {
        let suspended = license.status == LicenseStatus::Suspended;
        if suspended != active {
            return Ok(None);
        }
        let at = Utc::now();
        let command = if active {
            LicenseCommand::ReinstateLicense { at }
        } else {
            LicenseCommand::SuspendLicense { reason: Some(reason.to_owned()), at }
        };
        let changed = self.licenses.execute(&license.id, command, (self.metadata)(at)).await?;
        if !active {
            self.release_resources(&changed).await?;
        }
        Ok(Some(changed))
    }

    /// Deletes the license and lets its resources go.
    pub async fn delete(&self, license: &License) -> Result<License, SwitchError> {
        let at = Utc::now();
        let deleted =
            self.licenses.execute(&license.id, LicenseCommand::DeleteLicense { at }, (self.metadata)(at)).await?;
        self.release_resources(&deleted).await?;
        Ok(deleted)
    }

    /// Releases what the license holds of its tenant's resource pool (one
    /// read when it holds nothing).
    async fn release_resources(&self, license: &License) -> Result<(), SwitchError> {
        let tenant_id = license.tenant_id.as_str();
        let pool = self.resources.get(tenant_id).await?.map(|stored| stored.record).unwrap_or_default();
        if pool.held_by(&license.id).next().is_none() {
            return Ok(());
        }
        let (license_id, at) = (license.id.to_string(), Utc::now());
        let release = || ResourceCommand::ReleaseAll { license_id: license_id.clone(), at };
        self.resources.execute(tenant_id, release, &(self.metadata)(at)).await?;
        Ok(())
    }
}
