//! The V2 License Server's request bodies, with the document's field
//! names. Every field is optional here so a missing one is answered by the
//! handler with the document's error naming it, not by the JSON parser.

use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub license_key: Option<String>,
    pub hardware_hash: Option<String>,
    pub machine_name: Option<String>,
    pub app_version: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub license_key: Option<String>,
    pub hardware_hash: Option<String>,
    pub app_version: Option<String>,
}

/// The sample client's activate: `hardware_id` where the API has
/// `hardware_hash`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleActivateRequest {
    pub license_key: Option<String>,
    pub hardware_id: Option<String>,
    pub machine_name: Option<String>,
    pub app_version: Option<String>,
}

/// The sample client's validate: the activation's id from its activate.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleValidateRequest {
    pub license_key: Option<String>,
    pub activation_id: Option<i64>,
    pub hardware_id: Option<String>,
    pub app_version: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionCheckRequest {
    pub current_version: Option<String>,
    pub license_key: Option<String>,
}

/// The licenses a bulk operation names, by their integer ids.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub license_ids: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickEditRequest {
    /// `YYYY-MM-DD`.
    pub valid_until: Option<String>,
    pub max_activations: Option<i64>,
    pub max_users: Option<i64>,
}

/// What the document leaves open: all optional, a one-seat perpetual
/// license of the tenant's default product when empty.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// A product's id or code.
    pub product: Option<String>,
    /// `perpetual`, `subscription` or `trial`.
    pub r#type: Option<String>,
    pub valid_until: Option<String>,
    pub max_activations: Option<i64>,
    pub max_users: Option<i64>,
    /// A customer's integer id.
    pub customer_id: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    pub license_id: Option<i64>,
    pub resource_ids: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDeviceRequest {
    pub hardware_hash: Option<String>,
    pub machine_name: Option<String>,
    pub app_version: Option<String>,
}
