//! Who is calling, once a presented key has been checked, and what each
//! role may do with a license (seed 000's rules): the owner, their
//! tenant's admins and the operator may read it; admins and the operator
//! may administer it. Another tenant's license does not exist for a
//! caller: it is refused exactly as an unknown one.

use keyledger_domain::License;

use crate::tenancy::Role;

/// An authenticated caller. Tenant callers carry their tenant and user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
}

/// Why a caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Another tenant's license: answered as an unknown one.
    #[error("License not found")]
    LicenseNotFound,
    #[error("{0}")]
    Forbidden(&'static str),
}

impl Caller {
    /// The platform operator, who belongs to no tenant.
    pub fn operator() -> Self {
        Self { key_id: "operator".to_owned(), role: Role::Operator, tenant_id: None, user_id: None }
    }

    /// The tenant and user a tenant caller acts as; the operator has none.
    pub fn tenant(&self) -> Result<(&str, &str), AccessError> {
        match (&self.tenant_id, &self.user_id) {
            (Some(tenant), Some(user)) => Ok((tenant, user)),
            _ => Err(AccessError::Forbidden("This needs a tenant API key; the operator token belongs to no tenant")),
        }
    }

    pub fn require_operator(&self) -> Result<(), AccessError> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(AccessError::Forbidden("Only the operator may do this"))
        }
    }

    /// The tenant this admin manages.
    pub fn require_admin(&self) -> Result<&str, AccessError> {
        match (self.role, &self.tenant_id) {
            (Role::Admin, Some(tenant)) => Ok(tenant),
            _ => Err(AccessError::Forbidden("Only a tenant admin may do this")),
        }
    }

    fn is_in_tenant_of(&self, license: &License) -> bool {
        self.tenant_id.as_deref() == Some(license.tenant_id.as_str())
    }

    /// Whether a client call by this caller may use `license`: a tenant's
    /// key sees its own tenant's licenses only, the operator's every one.
    pub fn may_use(&self, license: &License) -> bool {
        self.tenant_id.as_deref().is_none_or(|tenant_id| tenant_id == license.tenant_id)
    }

    /// Seed 000's info rule: the owner, their tenant's admins and the
    /// operator. Another tenant's license does not exist for the caller.
    pub fn may_read(&self, license: &License) -> Result<(), AccessError> {
        match self.role {
            Role::Operator => Ok(()),
            _ if !self.is_in_tenant_of(license) => Err(AccessError::LicenseNotFound),
            Role::Admin | Role::System => Ok(()),
            Role::User if self.user_id.as_deref() == Some(license.owner_id.as_str()) => Ok(()),
            Role::User | Role::Client => {
                Err(AccessError::Forbidden("Only the license owner or an administrator may access this license"))
            }
        }
    }

    /// Administrative actions (suspend, reinstate, edit): tenant admins and
    /// the operator.
    pub fn may_administer(&self, license: &License) -> Result<(), AccessError> {
        match self.role {
            Role::Operator => Ok(()),
            _ if !self.is_in_tenant_of(license) => Err(AccessError::LicenseNotFound),
            Role::Admin | Role::System => Ok(()),
            Role::User | Role::Client => Err(AccessError::Forbidden("Only an administrator may do this")),
        }
    }
}
