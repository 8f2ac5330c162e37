//! A tenant's pool of allocatable resources (servers, workstations…): each
//! with an integer id, a free-text type, an identifier unique in the
//! tenant, and a status. The pool is one aggregate per tenant, so every
//! allocation is decided on the whole pool's latest state and the log
//! takes at most one of two allocations of a resource: the other finds
//! it taken when it is decided again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::TenantId;

/// Longest type and identifier.
pub const MAX_RESOURCE_TEXT: usize = 100;

/// Checks a resource's type or identifier: 1 to [`MAX_RESOURCE_TEXT`]
/// characters that can be shown as they are. The message completes "type
/// …" or "identifier …".
pub fn check_resource_text(value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.chars().count() > MAX_RESOURCE_TEXT {
        return Err(format!("must be 1 to {MAX_RESOURCE_TEXT} characters"));
    }
    crate::check_display_text(value).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Available,
    Allocated,
    Retired,
}

impl ResourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Available => "available",
            ResourceStatus::Allocated => "allocated",
            ResourceStatus::Retired => "retired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: i64,
    pub r#type: String,
    pub identifier: String,
    pub status: ResourceStatus,
    /// The license holding it (its id), while allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcePool {
    /// The tenant's id: one pool a tenant.
    pub tenant_id: TenantId,
    pub created_at: Option<DateTime<Utc>>,
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone)]
pub enum ResourceCommand {
    Create {
        tenant_id: TenantId,
        r#type: String,
        identifier: String,
        at: DateTime<Utc>,
    },
    /// All of `ids` to the license, or none.
    Allocate {
        license_id: String,
        ids: Vec<i64>,
        at: DateTime<Utc>,
    },
    /// Every resource the license holds.
    ReleaseAll {
        license_id: String,
        at: DateTime<Utc>,
    },
    Retire {
        id: i64,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResourceEvent {
    ResourceCreated { tenant_id: TenantId, id: i64, r#type: String, identifier: String, created_at: DateTime<Utc> },
    ResourcesAllocated { license_id: String, ids: Vec<i64>, allocated_at: DateTime<Utc> },
    ResourcesReleased { license_id: String, ids: Vec<i64>, released_at: DateTime<Utc> },
    ResourceRetired { id: i64, retired_at: DateTime<Utc> },
}

impl ResourceEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ResourceCreated { .. } => "ResourceCreated",
            Self::ResourcesAllocated { .. } => "ResourcesAllocated",
            Self::ResourcesReleased { .. } => "ResourcesReleased",
            Self::ResourceRetired { .. } => "ResourceRetired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("No resource {0} in the pool")]
    NotFound(i64),
    #[error("Resource {id} is allocated to another license")]
    HeldElsewhere { id: i64 },
    #[error("Resource {0} is retired")]
    Retired(i64),
    #[error("Resource {0} is allocated; release it before retiring it")]
    Allocated(i64),
    #[error("A resource with this identifier exists already")]
    IdentifierTaken,
    #[error("{0}")]
    Invalid(&'static str),
}

impl ResourcePool {
    pub fn exists(&self) -> bool {
        self.created_at.is_some()
    }

    pub fn get(&self, id: i64) -> Option<&Resource> {
        self.resources.iter().find(|resource| resource.id == id)
    }

    /// What the license holds.
    pub fn held_by<'a>(&'a self, license_id: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.iter().filter(move |resource| resource.license_id.as_deref() == Some(license_id))
    }

    pub fn decide(&self, command: ResourceCommand) -> Result<Vec<ResourceEvent>, ResourceError> {
        match command {
            ResourceCommand::Create { tenant_id, r#type, identifier, at } => {
                let text = |value: &str| !value.trim().is_empty() && value.chars().count() <= MAX_RESOURCE_TEXT;
                if !text(&r#type) || !text(&identifier) {
                    return Err(ResourceError::Invalid("type and identifier must be 1 to 100 characters"));
                }
                if self.resources.iter().any(|resource| resource.identifier == identifier) {
                    return Err(ResourceError::IdentifierTaken);
                }
                let id = self.resources.iter().map(|resource| resource.id).max().unwrap_or(0) + 1;
                Ok(vec![ResourceEvent::ResourceCreated { tenant_id, id, r#type, identifier, created_at: at }])
            }
            ResourceCommand::Allocate { license_id, ids, at } => {
                let mut new = Vec::new();
                for id in ids {
                    let resource = self.get(id).ok_or(ResourceError::NotFound(id))?;
                    match (resource.status, resource.license_id.as_deref()) {
                        (ResourceStatus::Retired, _) => return Err(ResourceError::Retired(id)),
                        (ResourceStatus::Allocated, Some(holder)) if holder == license_id => {}
                        (ResourceStatus::Allocated, _) => return Err(ResourceError::HeldElsewhere { id }),
                        (ResourceStatus::Available, _) => {
                            if !new.contains(&id) {
                                new.push(id);
                            }
                        }
                    }
                }
                if new.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ResourceEvent::ResourcesAllocated { license_id, ids: new, allocated_at: at }])
            }
            ResourceCommand::ReleaseAll { license_id, at } => {
                let ids: Vec<i64> = self.held_by(&license_id).map(|resource| resource.id).collect();
                if ids.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![ResourceEvent::ResourcesReleased { license_id, ids, released_at: at }])
            }
            ResourceCommand::Retire { id, at } => {
                let resource = self.get(id).ok_or(ResourceError::NotFound(id))?;
                match resource.status {
                    ResourceStatus::Retired => Ok(vec![]),
                    ResourceStatus::Allocated => Err(ResourceError::Allocated(id)),
                    ResourceStatus::Available => Ok(vec![ResourceEvent::ResourceRetired { id, retired_at: at }]),
                }
            }
        }
    }

    pub fn apply(&mut self, event: ResourceEvent) {
        match event {
            ResourceEvent::ResourceCreated { tenant_id, id, r#type, identifier, created_at } => {
                if self.created_at.is_none() {
                    self.tenant_id = tenant_id;
                    self.created_at = Some(created_at);
                }
                self.resources.push(Resource {
                    id,
                    r#type,
                    identifier,
                    status: ResourceStatus::Available,
                    license_id: None,
                    allocated_at: None,
                    created_at,
                });
            }
            ResourceEvent::ResourcesAllocated { license_id, ids, allocated_at } => {
                for resource in self.resources.iter_mut().filter(|resource| ids.contains(&resource.id)) {
                    resource.status = ResourceStatus::Allocated;
                    resource.license_id = Some(license_id.clone());
                    resource.allocated_at = Some(allocated_at);
                }
            }
            ResourceEvent::ResourcesReleased { ids, .. } => {
                for resource in self.resources.iter_mut().filter(|resource| ids.contains(&resource.id)) {
                    resource.status = ResourceStatus::Available;
                    resource.license_id = None;
                    resource.allocated_at = None;
                }
            }
            ResourceEvent::ResourceRetired { id, .. } => {
                if let Some(resource) = self.resources.iter_mut().find(|resource| resource.id == id) {
                    resource.status = ResourceStatus::Retired;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> ResourcePool {
        let mut pool = ResourcePool::default();
        for (n, kind) in ["server", "server", "workstation"].iter().enumerate() {
            let create = ResourceCommand::Create {
                tenant_id: TenantId::trusted("t"),
                r#type: (*kind).to_owned(),
                identifier: format!("R-{n}"),
                at: Utc::now(),
            };
            for event in pool.decide(create).unwrap() {
                pool.apply(event);
            }
        }
        pool
    }

    #[test]
    fn an_allocation_takes_all_it_names_or_none() {
        let mut pool = pool();
        let first = ResourceCommand::Allocate { license_id: "a".into(), ids: vec![1], at: Utc::now() };
        for event in pool.decide(first).unwrap() {
            pool.apply(event);
        }
        let both = ResourceCommand::Allocate { license_id: "b".into(), ids: vec![2, 1], at: Utc::now() };
        assert_eq!(pool.decide(both), Err(ResourceError::HeldElsewhere { id: 1 }));
        assert_eq!(pool.get(2).unwrap().status, ResourceStatus::Available, "nothing taken");
        let again = ResourceCommand::Allocate { license_id: "a".into(), ids: vec![1], at: Utc::now() };
        assert_eq!(pool.decide(again), Ok(vec![]), "holding it already is nothing to do");
        let release = ResourceCommand::ReleaseAll { license_id: "a".into(), at: Utc::now() };
        for event in pool.decide(release).unwrap() {
            pool.apply(event);
        }
        assert_eq!(pool.get(1).unwrap().status, ResourceStatus::Available);
    }

    #[test]
    fn identifiers_are_unique_and_an_allocated_resource_is_not_retired() {
        let mut pool = pool();
        let taken = ResourceCommand::Create {
            tenant_id: TenantId::trusted("t"),
            r#type: "server".into(),
            identifier: "R-0".into(),
            at: Utc::now(),
        };
        assert_eq!(pool.decide(taken), Err(ResourceError::IdentifierTaken));
        for event in
            pool.decide(ResourceCommand::Allocate { license_id: "a".into(), ids: vec![3], at: Utc::now() }).unwrap()
        {
            pool.apply(event);
        }
        assert_eq!(pool.decide(ResourceCommand::Retire { id: 3, at: Utc::now() }), Err(ResourceError::Allocated(3)));
    }
}
