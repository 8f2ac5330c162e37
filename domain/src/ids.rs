//! Typed ids: a license's, tenant's, owner's, product's, customer's and
//! device's ids are distinct types, so one can't be passed where another
//! is meant. Each is text on the wire and in events (`serde(transparent)`),
//! a UUID in its canonical lower-case form when it comes from outside:
//! [`parse`](LicenseId::parse) once at the edge, and the value is trusted
//! from then on.
//!
//! Ids are held as `Box<str>`, or as `Arc<str>` for those many licenses
//! share (tenant, owner, product): the validation view keeps one copy of
//! each of those for all its licenses (a million licenses would otherwise
//! hold a million copies of their tenant's id).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An id that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be a UUID")]
pub struct IdError {
    pub what: &'static str,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $store:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name($store);

        impl $name {
            /// A UUID from a request, in its canonical form.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                uuid::Uuid::parse_str(raw)
                    .map(|id| Self(<$store>::from(id.to_string())))
                    .map_err(|_| IdError { what: $what })
            }

            /// An id read back from the store or the log, which only ever
            /// holds ids that were parsed or made here.
            pub fn trusted(id: impl Into<String>) -> Self {
                Self(<$store>::from(id.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                String::from(&*self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.into_string()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &*self.0 == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == &*other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == &*other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self.as_str() == &*other.0
            }
        }
    };
}

typed_id!(
    /// A license's id (not its key).
    LicenseId,
    "licenseId",
    Box<str>
);
typed_id!(
    /// A tenant's id: the vendor a license, product or customer belongs to.
    TenantId,
    "tenantId",
    Arc<str>
);
typed_id!(
    /// The id of the user who owns a license.
    OwnerId,
    "ownerId",
    Arc<str>
);
typed_id!(
    /// A product's id.
    ProductId,
    "productId",
    Arc<str>
);
typed_id!(
    /// A customer's id.
    CustomerId,
    "customerId",
    Box<str>
);
typed_id!(
    /// A device's id: derived from its license's id and its machine's hash
    /// (`device_id`), stable across the machine's re-activations.
    DeviceId,
    "deviceId",
    Box<str>
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_to_their_canonical_form_and_compare_with_text() {
        let id = LicenseId::parse("7C9E6679-7425-40DE-944B-E07FC1F90AE7").unwrap();
        assert_eq!(id, "7c9e6679-7425-40de-944b-e07fc1f90ae7");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"7c9e6679-7425-40de-944b-e07fc1f90ae7\"");
        assert_eq!(TenantId::parse("acme").unwrap_err().to_string(), "tenantId must be a UUID");
    }
}
