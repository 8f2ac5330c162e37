//! The HTTP error type. Every failure a handler can meet becomes one of
//! these, with a status, a stable machine-readable `code`, a message for
//! people and, for bad input, the field at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyledger_domain::LicenseError;
use serde_json::{json, Value};

/// Which JSON body the error is rendered as. Seed 000's validate answers
/// `{"isValid": false, ...}` where every other endpoint answers
/// `{"success": false, ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    Success,
    Validate,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub shape: ErrorShape,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, shape: ErrorShape::Success }
    }

    /// Bad input in one field of the request.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.to_owned()), ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", message) }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn license_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "license_not_found", LicenseError::NotFound.to_string())
    }

    /// Retries ran out while other writers kept changing the same license.
    pub fn contended() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "contended",
            "The license is being changed by other requests; retry shortly",
        )
    }

    /// An infrastructure failure: logged here with its whole chain of
    /// causes (inside the request's span, so with its request id), opaque
    /// to the client.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let error = error.into();
        tracing::error!(error = %keyledger_app::client::error_chain(&*error), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error")
    }

    /// A refusal by the license rules. Seed 000 answers these with 400.
    pub fn refused(error: LicenseError) -> Self {
        let code = match error {
            LicenseError::NotFound => "license_not_found",
            LicenseError::AlreadyExists => "license_exists",
            LicenseError::Expired => "license_expired",
            LicenseError::Revoked => "license_revoked",
            LicenseError::Suspended => "license_suspended",
            LicenseError::NotActivated => "license_not_activated",
            LicenseError::MachineNotActivated => "machine_not_activated",
            LicenseError::BoundToAnotherMachine => "bound_to_another_machine",
            LicenseError::SeatLimitReached { .. } => "seat_limit_reached",
            LicenseError::NotSuspended => "license_not_suspended",
            LicenseError::NotYetExpired { .. } => "license_not_expired",
            LicenseError::SeatsBelowActiveMachines { .. } => "seats_below_active_machines",
            LicenseError::ExpiryBeforeCreation => "expiry_before_creation",
            LicenseError::AnomalyNotOpen => "anomaly_not_open",
            LicenseError::DeviceBlocked => "device_blocked",
            LicenseError::HeartbeatDead => "heartbeat_dead",
            LicenseError::TransferLimitReached { .. } => "transfer_limit",
            LicenseError::ProductMismatch => "product_mismatch",
            LicenseError::FeatureMissing { .. } => "feature_missing",
        };
        // Seed 000 answers refusals with 400; a blocked device and a
        // transfer limit are seed 004's 403 and 429.
        let status = match error {
            LicenseError::DeviceBlocked => StatusCode::FORBIDDEN,
            // Seed 004's "transfer limit exceeded".
            LicenseError::TransferLimitReached { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut api_error = Self::new(status, code, error.to_string());
        api_error.field = match error {
            LicenseError::SeatsBelowActiveMachines { .. } => Some("maxActivations".to_owned()),
            LicenseError::ExpiryBeforeCreation => Some("expiredAt".to_owned()),
            _ => None,
        };
        api_error
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn shaped(mut self, shape: ErrorShape) -> Self {
        self.shape = shape;
        self
    }

    pub fn body(&self) -> Value {
        let mut body = match self.shape {
            ErrorShape::Success => json!({ "success": false, "error": self.message }),
            ErrorShape::Validate => json!({
                "isValid": false,
                "error": self.message,
                "expiresAt": null,
                "licenseType": null,
                "maxConnections": null,
            }),
        };
        body["code"] = json!(self.code);
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        body
    }
}

/// What an error answer said, kept on the response so that a dialect
/// with an error shape of its own can render it again (see
/// the front door in `keyledger-api`).
#[derive(Debug, Clone)]
pub struct ErrorParts {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = ErrorParts { code: self.code, message: self.message.clone(), field: self.field.clone() };
        let mut response = (self.status, Json(self.body())).into_response();
        response.extensions_mut().insert(parts);
        response
    }
}

/// The body of every error, for the OpenAPI document: a stable `code`, a
/// message, and the field at fault for bad input. The client endpoints'
/// errors also carry what they answer for (`nonce`, `licenseKey`,
/// `machineId`, `issuedAt`), their `code` is one of the client answer
/// codes (`NOT_FOUND`, `EXPIRED`, …) with the platform's own code in
/// `reason`, and validate's carry `isValid: false` instead of `success`.
#[derive(utoipa::ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorBody {
    success: Option<bool>,
    #[schema(rename = "isValid")]
    is_valid: Option<bool>,
    error: String,
    code: String,
    /// Client endpoints: the platform's error code.
    reason: Option<String>,
    field: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<keyledger_app::CommandError> for ApiError {
    fn from(error: keyledger_app::CommandError) -> Self {
        match error {
            keyledger_app::CommandError::Refused(refusal) => ApiError::refused(refusal),
            keyledger_app::CommandError::Contended | keyledger_app::CommandError::GuardMoved => ApiError::contended(),
            other => ApiError::internal(other),
        }
    }
}

impl From<keyledger_app::access::AccessError> for ApiError {
    fn from(error: keyledger_app::access::AccessError) -> Self {
        match error {
            keyledger_app::access::AccessError::LicenseNotFound => ApiError::license_not_found(),
            keyledger_app::access::AccessError::Forbidden(message) => ApiError::forbidden(message),
        }
    }
}

impl From<keyledger_app::client::ClientError> for ApiError {
    fn from(error: keyledger_app::client::ClientError) -> Self {
        use keyledger_app::client::ClientError;
        match error {
            ClientError::Refused(reason) => ApiError::refused(reason),
            ClientError::Invalid { field, message } => ApiError::field(&field, message),
            ClientError::Contended => ApiError::contended(),
            failed @ ClientError::Failed { .. } => ApiError::internal(failed),
        }
    }
}
