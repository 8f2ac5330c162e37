//! A tenant's anomaly thresholds and what to do about a finding. Stored
//! whole as JSON; a tenant that never changed them has the defaults.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What follows a finding besides the `AnomalyDetected` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record the anomaly only.
    #[default]
    Record,
    /// Also suspend the license, with the reason `anomaly: <type>`.
    Suspend,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AnomalySettings {
    pub action: Action,
    /// A device counts as used once it sent a heartbeat or held its seat
    /// this long. Findings that stand only on devices that were not used
    /// (a free seat activated and deactivated over and over) are recorded
    /// and never suspend.
    pub device_lived_secs: u32,
    /// After a detector suspended a license, none suspends it again for
    /// this long (findings are still recorded): a reinstated license is
    /// not suspended again by the next burst.
    pub suspend_cooldown_secs: u32,
    pub license_hopping: Hopping,
    pub unusual_activation_pattern: Networks,
    pub excessive_heartbeats: CallRate,
}

/// A seat moving to a new machine (an activation that takes a seat a
/// deactivation or revoke freed, by another machine) more than
/// `maxMoves` times within `windowSecs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Hopping {
    pub enabled: bool,
    pub max_moves: u32,
    pub window_secs: u32,
}

/// Activations of one license from more than `maxNetworks` distinct
/// networks (an IPv4 /24 or an IPv6 /48) within `windowSecs`; and, the
/// tenant-wide form, a tenant's activations in an hour far above its own
/// trailing rate (`tenantSurge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Networks {
    pub enabled: bool,
    pub max_networks: u32,
    pub window_secs: u32,
    pub tenant_surge: Surge,
}

/// "Far above" the trailing rate: more activations in one clock hour (UTC)
/// than both `minActivations` and `factor` times the tenant's average per
/// hour over the `trailingHours` before it. A tenant with less than
/// `minHistoryHours` of activations behind it has no rate to compare with
/// and is not judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Surge {
    pub enabled: bool,
    pub factor: u32,
    pub min_activations: u32,
    pub trailing_hours: u32,
    pub min_history_hours: u32,
}

/// The longest trailing period a surge is measured against: 30 days.
pub const MAX_TRAILING_HOURS: u32 = 30 * 24;

/// A device making more than `maxCallsPerWindow` validate and heartbeat
/// calls in each of `sustainedWindows` consecutive windows of
/// `windowSecs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CallRate {
    pub enabled: bool,
    pub max_calls_per_window: u32,
    pub window_secs: u32,
    pub sustained_windows: u32,
}

const DAY: u32 = 24 * 3600;

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            action: Action::Record,
            device_lived_secs: 3600,
            suspend_cooldown_secs: 7 * DAY,
            license_hopping: Hopping::default(),
            unusual_activation_pattern: Networks::default(),
            excessive_heartbeats: CallRate::default(),
        }
    }
}

impl Default for Hopping {
    fn default() -> Self {
        Self { enabled: true, max_moves: 3, window_secs: DAY }
    }
}

impl Default for Networks {
    fn default() -> Self {
        Self { enabled: true, max_networks: 5, window_secs: DAY, tenant_surge: Surge::default() }
    }
}

impl Default for Surge {
    /// Ten times the last week's hourly average, and at least 50: a launch
    /// or a promotion can double a tenant's activations; a key posted on a
    /// forum multiplies them.
    fn default() -> Self {
        Self { enabled: true, factor: 10, min_activations: 50, trailing_hours: 7 * 24, min_history_hours: 24 }
    }
}

impl Default for CallRate {
    /// Seed 003 allows a heartbeat a minute per activation; a client that
    /// also validates once a minute makes two calls.
    fn default() -> Self {
        Self { enabled: true, max_calls_per_window: 2, window_secs: 60, sustained_windows: 5 }
    }
}

/// A bad setting: the field at fault (`licenseHopping.maxMoves`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
    /// The field is not a setting at all (rather than a bad value).
    pub unknown: bool,
}

fn bad(field: &str, message: impl Into<String>) -> SettingsError {
    SettingsError { field: field.to_owned(), message: message.into(), unknown: false }
}

/// The longest window any detector looks back over: a week.
pub const MAX_WINDOW_SECS: u32 = 7 * DAY;

impl AnomalySettings {
    /// These settings with `patch` (a JSON object naming only what
    /// changes, nested as the settings are) applied and checked.
    pub fn patched(&self, patch: &Value) -> Result<Self, SettingsError> {
        let Value::Object(_) = patch else { return Err(bad("body", "must be a JSON object")) };
        let mut merged = serde_json::to_value(self).expect("settings serialise");
        merge(&mut merged, patch, "")?;
        let settings: Self = serde_path_to_error::deserialize(merged).map_err(|e| {
            let field = e.path().to_string();
            bad(&field, e.into_inner().to_string())
        })?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let window = |field: &str, secs: u32, max: u32| {
            if secs == 0 || secs > max {
                Err(bad(field, format!("must be between 1 and {max} seconds")))
            } else {
                Ok(())
            }
        };
        let at_least_one = |field: &str, n: u32| if n == 0 { Err(bad(field, "must be at least 1")) } else { Ok(()) };
        if self.device_lived_secs > DAY {
            return Err(bad("deviceLivedSecs", format!("must be between 0 and {DAY} seconds")));
        }
        if self.suspend_cooldown_secs > 365 * DAY {
            return Err(bad("suspendCooldownSecs", format!("must be between 0 and {} seconds", 365 * DAY)));
        }
        window("licenseHopping.windowSecs", self.license_hopping.window_secs, MAX_WINDOW_SECS)?;
        at_least_one("licenseHopping.maxMoves", self.license_hopping.max_moves)?;
        window("unusualActivationPattern.windowSecs", self.unusual_activation_pattern.window_secs, MAX_WINDOW_SECS)?;
        at_least_one("unusualActivationPattern.maxNetworks", self.unusual_activation_pattern.max_networks)?;
        window("excessiveHeartbeats.windowSecs", self.excessive_heartbeats.window_secs, 3600)?;
        at_least_one("excessiveHeartbeats.maxCallsPerWindow", self.excessive_heartbeats.max_calls_per_window)?;
        let surge = &self.unusual_activation_pattern.tenant_surge;
        if surge.factor < 2 || surge.factor > 1000 {
            return Err(bad("unusualActivationPattern.tenantSurge.factor", "must be between 2 and 1000"));
        }
        at_least_one("unusualActivationPattern.tenantSurge.minActivations", surge.min_activations)?;
        if surge.trailing_hours == 0 || surge.trailing_hours > MAX_TRAILING_HOURS {
            let message = format!("must be between 1 and {MAX_TRAILING_HOURS}");
            return Err(bad("unusualActivationPattern.tenantSurge.trailingHours", message));
        }
        if surge.min_history_hours > surge.trailing_hours {
            return Err(bad("unusualActivationPattern.tenantSurge.minHistoryHours", "must not exceed trailingHours"));
        }
        let sustained = self.excessive_heartbeats.sustained_windows;
        if sustained == 0 || sustained > 1000 {
            return Err(bad("excessiveHeartbeats.sustainedWindows", "must be between 1 and 1000"));
        }
        Ok(())
    }
}

/// Copies `patch` into `into`, refusing names `into` does not have, so a
/// misspelt setting is an error instead of silently ignored.
fn merge(into: &mut Value, patch: &Value, path: &str) -> Result<(), SettingsError> {
    let (Value::Object(target), Value::Object(changes)) = (&mut *into, patch) else {
        *into = patch.clone();
        return Ok(());
    };
    for (name, value) in changes {
        let field = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        let Some(current) = target.get_mut(name) else {
            let known: Vec<&str> = target.keys().map(String::as_str).collect();
            let message = format!("is not a setting. Known settings here: {}", known.join(", "));
            return Err(SettingsError { unknown: true, ..bad(&field, message) });
        };
        if current.is_object() && !value.is_object() {
            return Err(bad(&field, "must be an object"));
        }
        merge(current, value, &field)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_changes_what_it_names_only() {
        let patched = AnomalySettings::default()
            .patched(&json!({"action": "suspend", "licenseHopping": {"maxMoves": 5}}))
            .unwrap();
        assert_eq!(patched.action, Action::Suspend);
        assert_eq!(patched.license_hopping.max_moves, 5);
        assert_eq!(patched.license_hopping.window_secs, DAY);
        assert_eq!(patched.excessive_heartbeats, CallRate::default());
    }

    #[test]
    fn a_bad_patch_names_the_field_at_fault() {
        let defaults = AnomalySettings::default();
        let field = |patch: Value| defaults.patched(&patch).unwrap_err().field;
        assert_eq!(field(json!({"licenseHopping": {"maxMoves": 0}})), "licenseHopping.maxMoves");
        assert_eq!(field(json!({"licenseHopping": {"maxMovs": 2}})), "licenseHopping.maxMovs");
        assert_eq!(field(json!({"excessiveHeartbeats": {"windowSecs": "60"}})), "excessiveHeartbeats.windowSecs");
        assert_eq!(field(json!({"excessiveHeartbeats": {"windowSecs": 7200}})), "excessiveHeartbeats.windowSecs");
        assert_eq!(field(json!({"action": "delete"})), "action");
        let surge = |patch: Value| field(json!({"unusualActivationPattern": {"tenantSurge": patch}}));
        assert_eq!(surge(json!({"factor": 1})), "unusualActivationPattern.tenantSurge.factor");
        assert_eq!(
            surge(json!({"trailingHours": 24, "minHistoryHours": 25})),
            "unusualActivationPattern.tenantSurge.minHistoryHours"
        );
        assert_eq!(surge(json!({"rate": 3})), "unusualActivationPattern.tenantSurge.rate");
        assert_eq!(field(json!({"licenseHopping": 3})), "licenseHopping");
        assert_eq!(field(json!([])), "body");
    }

    #[test]
    fn stored_settings_missing_a_newer_field_read_with_its_default() {
        let stored: AnomalySettings = serde_json::from_value(json!({"action": "suspend"})).unwrap();
        assert_eq!(stored.license_hopping, Hopping::default());
    }
}
