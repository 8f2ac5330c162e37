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
