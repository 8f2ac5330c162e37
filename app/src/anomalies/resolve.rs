//! Resolving an anomaly, as the API and the panel do it: the license
//! records `AnomalyResolved` (the detector reads it), and the anomaly's
//! row is marked at once so the caller's next read sees it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use keyledger_domain::{LicenseCommand, LicenseError};

use super::store::{Anomaly, AnomalyStore, AnomalyStoreError, Resolution};
use crate::service::{CommandError, LicenseService};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no such anomaly")]
    NotFound,
    #[error("the anomaly is resolved already")]
    Resolved,
    #[error(transparent)]
    Store(#[from] AnomalyStoreError),
    #[error(transparent)]
    Command(CommandError),
}

/// Resolves the tenant's anomaly `id` with `note`, as `resolved_by`.
pub async fn resolve(
    licenses: &LicenseService,
    store: &AnomalyStore,
    tenant_id: Option<&str>,
    id: &str,
    note: Option<String>,
    resolved_by: &str,
    metadata: impl FnOnce(&Anomaly, DateTime<Utc>) -> HashMap<String, String>,
) -> Result<Anomaly, ResolveError> {
    let anomaly = store.get(tenant_id, id).await?.ok_or(ResolveError::NotFound)?;
    if anomaly.resolved_at.is_some() {
        return Err(ResolveError::Resolved);
    }
    let now = Utc::now();
    let command = LicenseCommand::ResolveAnomaly { anomaly_id: id.to_owned(), note: note.clone(), at: now };
    match licenses.execute(&anomaly.license_id, command, metadata(&anomaly, now)).await {
        Ok(_) => {}
        Err(CommandError::Refused(LicenseError::AnomalyNotOpen)) => return Err(ResolveError::Resolved),
        Err(error) => return Err(ResolveError::Command(error)),
    }
    let resolution = Resolution {
        anomaly_id: id.to_owned(),
        resolved_at: crate::webhooks::timestamp(now),
        resolved_by: Some(resolved_by.to_owned()),
        note,
    };
    store.record_resolved(&[resolution]).await?;
    store.get(tenant_id, id).await?.ok_or(ResolveError::NotFound)
}
