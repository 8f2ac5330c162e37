//! The `Product` aggregate: what a vendor sells, with the feature codes
//! (entitlements) its licenses carry and the default policy they start
//! from. Its own stream and hash chain in the log, like a license's.

use crate::{ProductId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::release::Release;
use crate::text::check_display_text;
use crate::{KeyFormat, Policy};

/// Longest product name.
pub const MAX_PRODUCT_NAME_LEN: usize = 200;
/// Longest product or feature code.
pub const MAX_CODE_LEN: usize = 64;
/// Most features a product (or a license of its own) carries.
pub const MAX_FEATURES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub tenant_id: TenantId,
    pub name: String,
    pub code: String,
    pub features: Vec<String>,
    /// The shape of its licenses' keys.
    #[serde(default, skip_serializing_if = "KeyFormat::is_default")]
    pub key_format: KeyFormat,
    #[serde(default, skip_serializing_if = "Policy::is_default")]
    pub policy: Policy,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Every release published, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductEvent {
    ProductCreated {
        product_id: ProductId,
        tenant_id: TenantId,
        name: String,
        code: String,
        features: Vec<String>,
        /// Absent for the default, as on products created before formats.
        #[serde(default, skip_serializing_if = "KeyFormat::is_default")]
        key_format: KeyFormat,
        #[serde(default, skip_serializing_if = "Policy::is_default")]
        policy: Policy,
        created_at: DateTime<Utc>,
    },
    /// The resulting values of an edit, not a diff.
    ProductUpdated {
        name: String,
        code: String,
        features: Vec<String>,
        #[serde(default, skip_serializing_if = "KeyFormat::is_default")]
        key_format: KeyFormat,
        #[serde(default, skip_serializing_if = "Policy::is_default")]
        policy: Policy,
        updated_at: DateTime<Utc>,
    },
    ProductDeleted {
        deleted_at: DateTime<Utc>,
    },
    ReleasePublished {
        release: Release,
        published_at: DateTime<Utc>,
    },
}

impl ProductEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ProductCreated { .. } => "ProductCreated",
            Self::ProductUpdated { .. } => "ProductUpdated",
            Self::ProductDeleted { .. } => "ProductDeleted",
            Self::ReleasePublished { .. } => "ReleasePublished",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    CreateProduct {
        product_id: ProductId,
        tenant_id: TenantId,
        name: String,
        code: String,
        features: Vec<String>,
        key_format: KeyFormat,
        policy: Policy,
        at: DateTime<Utc>,
    },
    /// `None` leaves a field as it is.
    UpdateProduct {
        name: Option<String>,
        code: Option<String>,
        features: Option<Vec<String>>,
        key_format: Option<KeyFormat>,
        policy: Option<Policy>,
        at: DateTime<Utc>,
    },
    DeleteProduct {
        at: DateTime<Utc>,
    },
    /// A version may be published once per channel.
    PublishRelease {
        release: Release,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("Product not found")]
    NotFound,
    #[error("Product already exists")]
    AlreadyExists,
    #[error("This version is published on this channel already")]
    ReleaseExists,
}

/// Why a name, code or feature list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductFieldError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may hold only letters, digits, '_', '-' and '.'")]
    BadCode,
    #[error("may hold at most {MAX_FEATURES} features")]
    TooMany,
    #[error("{0}")]
    Text(#[from] crate::TextError),
}

/// A product's display name: trimmed, 1 to 200 characters of display text.
pub fn parse_product_name(raw: &str) -> Result<String, ProductFieldError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ProductFieldError::Empty);
    }
    if name.chars().count() > MAX_PRODUCT_NAME_LEN {
        return Err(ProductFieldError::TooLong(MAX_PRODUCT_NAME_LEN));
    }
    check_display_text(name)?;
    Ok(name.to_owned())
}

/// A product or feature code: 1 to 64 of `A-Z a-z 0-9 _ - .`, kept as
/// given (`PRO`, `offline-mode`).
pub fn parse_code(raw: &str) -> Result<String, ProductFieldError> {
    if raw.is_empty() {
        return Err(ProductFieldError::Empty);
    }
    if raw.len() > MAX_CODE_LEN {
        return Err(ProductFieldError::TooLong(MAX_CODE_LEN));
    }
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(ProductFieldError::BadCode);
    }
    Ok(raw.to_owned())
}

/// Feature codes, each checked, duplicates dropped, in the order given.
pub fn parse_features(raw: &[String]) -> Result<Vec<String>, (usize, ProductFieldError)> {
    if raw.len() > MAX_FEATURES {
        return Err((0, ProductFieldError::TooMany));
    }
    let mut features: Vec<String> = Vec::with_capacity(raw.len());
    for (index, feature) in raw.iter().enumerate() {
        let feature = parse_code(feature).map_err(|error| (index, error))?;
        if !features.contains(&feature) {
            features.push(feature);
        }
    }
    Ok(features)
}

impl Product {
    pub fn exists(&self) -> bool {
        !self.id.is_empty() && !self.deleted
    }

    pub fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        use ProductCommand::*;
        use ProductEvent::*;
        match command {
            CreateProduct { product_id, tenant_id, name, code, features, key_format, policy, at } => {
                if !self.id.is_empty() {
                    return Err(ProductError::AlreadyExists);
                }
                Ok(vec![ProductCreated {
                    product_id,
                    tenant_id,
                    name,
                    code,
                    features,
                    key_format,
                    policy,
                    created_at: at,
                }])
            }
            UpdateProduct { name, code, features, key_format, policy, at } => {
                if !self.exists() {
                    return Err(ProductError::NotFound);
                }
                let name = name.unwrap_or_else(|| self.name.clone());
                let code = code.unwrap_or_else(|| self.code.clone());
                let features = features.unwrap_or_else(|| self.features.clone());
                let key_format = key_format.unwrap_or(self.key_format);
                let policy = policy.unwrap_or_else(|| self.policy.clone());
                let unchanged = name == self.name
                    && code == self.code
                    && features == self.features
                    && key_format == self.key_format
                    && policy == self.policy;
                if unchanged {
                    return Ok(vec![]);
                }
                Ok(vec![ProductUpdated { name, code, features, key_format, policy, updated_at: at }])
            }
            DeleteProduct { at } => {
                if !self.exists() {
                    return Err(ProductError::NotFound);
                }
                Ok(vec![ProductDeleted { deleted_at: at }])
            }
            PublishRelease { release, at } => {
                if !self.exists() {
                    return Err(ProductError::NotFound);
                }
                let taken = self.releases.iter().any(|r| r.version == release.version && r.channel == release.channel);
                if taken {
                    return Err(ProductError::ReleaseExists);
                }
                Ok(vec![ReleasePublished { release, published_at: at }])
            }
        }
    }

    pub fn apply(&mut self, event: ProductEvent) {
        use ProductEvent::*;
        match event {
            ProductCreated { product_id, tenant_id, name, code, features, key_format, policy, created_at } => {
                *self = Product {
                    id: product_id,
                    tenant_id,
                    name,
                    code,
                    features,
                    key_format,
                    policy,
                    created_at: Some(created_at),
                    updated_at: Some(created_at),
                    deleted: false,
                    releases: Vec::new(),
                };
            }
            ProductUpdated { name, code, features, key_format, policy, updated_at } => {
                self.name = name;
                self.code = code;
                self.features = features;
                self.key_format = key_format;
                self.policy = policy;
                self.updated_at = Some(updated_at);
            }
            ProductDeleted { deleted_at } => {
                self.deleted = true;
                self.updated_at = Some(deleted_at);
            }
            ReleasePublished { release, .. } => {
                self.releases.push(release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 22, 10, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn create() -> ProductCommand {
        ProductCommand::CreateProduct {
            product_id: ProductId::trusted("p-1"),
            tenant_id: TenantId::trusted("t-1"),
            name: "Studio".into(),
            code: "PRO".into(),
            features: vec!["export".into()],
            key_format: KeyFormat::FiveByFive,
            policy: Policy::default(),
            at: t(0),
        }
    }

    fn folded(commands: Vec<ProductCommand>) -> Product {
        let mut product = Product::default();
        for command in commands {
            for event in product.decide(command).unwrap() {
                product.apply(event);
            }
        }
        product
    }

    #[test]
    fn a_product_is_created_updated_and_deleted() {
        let product = folded(vec![create()]);
        assert!(product.exists());
        assert_eq!((product.code.as_str(), product.features.clone()), ("PRO", vec!["export".to_owned()]));
        assert_eq!(product.decide(create()), Err(ProductError::AlreadyExists));
        let update = |features: Option<Vec<String>>| ProductCommand::UpdateProduct {
            name: None,
            code: None,
            features,
            key_format: None,
            policy: None,
            at: t(1),
        };
        assert_eq!(product.decide(update(None)), Ok(vec![]), "nothing changed, nothing recorded");
        let product = folded(vec![create(), update(Some(vec!["export".into(), "sync".into()]))]);
        assert_eq!(product.features, ["export", "sync"]);
        let deleted = folded(vec![create(), ProductCommand::DeleteProduct { at: t(2) }]);
        assert!(!deleted.exists());
        assert_eq!(deleted.decide(update(None)), Err(ProductError::NotFound));
        assert_eq!(deleted.decide(ProductCommand::DeleteProduct { at: t(3) }), Err(ProductError::NotFound));
    }

    #[test]
    fn names_codes_and_features_are_checked() {
        assert_eq!(parse_product_name("  Studio "), Ok("Studio".to_owned()));
        assert_eq!(parse_product_name(" "), Err(ProductFieldError::Empty));
        assert_eq!(parse_code("offline-mode.v2"), Ok("offline-mode.v2".to_owned()));
        assert_eq!(parse_code("has space"), Err(ProductFieldError::BadCode));
        assert_eq!(parse_code(&"x".repeat(65)), Err(ProductFieldError::TooLong(64)));
        let features = parse_features(&["a".into(), "b".into(), "a".into()]).unwrap();
        assert_eq!(features, ["a", "b"]);
        assert_eq!(parse_features(&["ok".into(), "no way".into()]), Err((1, ProductFieldError::BadCode)));
    }
}
