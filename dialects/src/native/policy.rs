//! A license's policy from the fields of generate and edit: each field
//! checked and named when it is wrong, applied over the policy it changes.

use keyledger_domain::{
    Overage, Policy, Resurrection, TransferLimit, MAX_HEARTBEAT_SECS, MAX_TRANSFERS, MIN_HEARTBEAT_SECS,
};

use crate::native::wire::PolicyFields;
use keyledger_http::error::{ApiError, ApiResult};

/// Longest transfer-limit period: a year.
const MAX_PERIOD_SECS: i64 = 366 * 24 * 3600;

fn within(raw: i64, field: &str, (min, max): (i64, i64)) -> ApiResult<u32> {
    if (min..=max).contains(&raw) {
        Ok(raw as u32)
    } else {
        Err(ApiError::field(field, format!("{field} must be an integer from {min} to {max}")))
    }
}

/// `base` with the given fields applied: a field left out keeps its value,
/// `null` removes it.
pub fn apply(base: &Policy, fields: &PolicyFields) -> ApiResult<Policy> {
    let mut policy = base.clone();
    if let Some(secs) = fields.heartbeat_duration_secs {
        let range = (i64::from(MIN_HEARTBEAT_SECS), i64::from(MAX_HEARTBEAT_SECS));
        policy.heartbeat_secs = secs.map(|secs| within(secs, "policy.heartbeatDurationSecs", range)).transpose()?;
    }
    if let Some(raw) = &fields.resurrection {
        policy.resurrection = match raw.as_str() {
            "none" => Resurrection::None,
            "revive" => Resurrection::Revive,
            _ => {
                return Err(ApiError::field(
                    "policy.resurrection",
                    "policy.resurrection must be \"none\" or \"revive\"",
                ))
            }
        };
    }
    if let Some(limit) = &fields.transfer_limit {
        policy.transfer_limit = match limit {
            None => None,
            Some(limit) => {
                let count = limit.count.ok_or_else(|| {
                    ApiError::field("policy.transferLimit.count", "policy.transferLimit.count is required")
                })?;
                let period = limit.period_secs.ok_or_else(|| {
                    ApiError::field("policy.transferLimit.periodSecs", "policy.transferLimit.periodSecs is required")
                })?;
                Some(TransferLimit {
                    count: within(count, "policy.transferLimit.count", (0, i64::from(MAX_TRANSFERS)))?,
                    period_secs: within(period, "policy.transferLimit.periodSecs", (1, MAX_PERIOD_SECS))?,
                })
            }
        };
    }
    if let Some(raw) = &fields.overage {
        policy.overage = Overage::parse(raw).ok_or_else(|| {
            ApiError::field("policy.overage", "policy.overage must be \"none\", \"1.25\", \"1.5\" or \"2\"")
        })?;
    }
    if let Some(users) = fields.max_users {
        policy.max_users = users.map(|users| within(users, "policy.maxUsers", (1, i64::from(u32::MAX)))).transpose()?;
    }
    Ok(policy)
}
