//! Webhook event names: dotted lower case, `<group>.<what happened>`.
//! Endpoints subscribe with names, prefixes (`license.*`) or `*`.

/// Sent by `POST /api/v1/webhooks/{id}/test`.
pub const TEST_EVENT: &str = "webhook.test";
/// Never matched by `*` or a prefix, only when named: a fleet's
/// heartbeats would drown everything else.
pub const HEARTBEAT: &str = "license.heartbeat";

/// Seats in use reached 80% or 100% of the license's seats.
pub const USAGE_THRESHOLD: &str = "license.usage_threshold";

/// A device passed its call allowance in one window (the anomaly
/// detector's raw material); only when named.
pub const CALL_RATE_EXCEEDED: &str = "license.call_rate_exceeded";

/// Every name an endpoint can subscribe to.
pub const NAMES: &[&str] = &[
    "license.generated",
    "license.activated",
    "license.deactivated",
    "license.revoked",
    "license.suspended",
    "license.reinstated",
    "license.expired",
    "license.edited",
    "license.deleted",
    "license.checked_out",
    "system.key_issued",
    "device.blocked",
    "device.unblocked",
    "device.culled",
    "product.created",
    "product.updated",
    "product.deleted",
    "release.published",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "resource.created",
    "resources.allocated",
    "resources.released",
    "resource.retired",
    HEARTBEAT,
    USAGE_THRESHOLD,
    CALL_RATE_EXCEEDED,
    "anomaly.detected",
    "anomaly.resolved",
    TEST_EVENT,
];

/// The webhook name of a log event type: `LicenseActivated` is
/// `license.activated`, `HeartbeatRecorded` `license.heartbeat`, and a
/// type added later is named by the same rule (`AnomalyDetected`,
/// `anomaly.detected`).
pub fn webhook_name(event_type: &str) -> String {
    if event_type == "HeartbeatRecorded" {
        return HEARTBEAT.to_owned();
    }
    let mut words: Vec<String> = Vec::new();
    for c in event_type.chars() {
        if c.is_ascii_uppercase() || words.is_empty() {
            words.push(String::new());
        }
        words.last_mut().expect("pushed above").push(c.to_ascii_lowercase());
    }
    match words.split_first() {
        Some((group, rest)) if !rest.is_empty() => format!("{group}.{}", rest.join("_")),
        _ => format!("event.{}", event_type.to_ascii_lowercase()),
    }
}

/// `*`, a known name, or a known group's prefix (`license.*`).
pub fn valid_pattern(pattern: &str) -> bool {
    if pattern == "*" || NAMES.contains(&pattern) {
        return true;
    }
    pattern.strip_suffix(".*").is_some_and(|group| NAMES.iter().any(|name| name.starts_with(&format!("{group}."))))
}

/// Sent only to endpoints that name them: `*` and prefixes leave them
/// out. Heartbeats would drown everything else, and every activation of
/// a one-seat license is a 100% usage alert; a device calling in a loop
/// reports a window over its allowance every window.
const ONLY_WHEN_NAMED: [&str; 3] = [HEARTBEAT, USAGE_THRESHOLD, CALL_RATE_EXCEEDED];

/// Whether an endpoint subscribed with `patterns` wants event `name`.
pub fn matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|pattern| {
        pattern == name
            || (!ONLY_WHEN_NAMED.contains(&name)
                && (pattern == "*" || pattern.strip_suffix('*').is_some_and(|prefix| name.starts_with(prefix))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_event_can_be_subscribed_to_by_name() {
        let types = [
            "ProductCreated",
            "ProductUpdated",
            "ProductDeleted",
            "ReleasePublished",
            "CustomerCreated",
            "CustomerUpdated",
            "CustomerDeleted",
            "DeviceBlocked",
            "DeviceUnblocked",
            "DeviceCulled",
            "LicenseDeleted",
            "LicenseCheckedOut",
            "SystemKeyIssued",
        ];
        for event_type in types {
            assert!(NAMES.contains(&webhook_name(event_type).as_str()), "{event_type}");
        }
        assert!(matches(&["customer.*".to_owned()], "customer.updated"));
    }

    #[test]
    fn event_types_get_dotted_names() {
        assert_eq!(webhook_name("LicenseActivated"), "license.activated");
        assert_eq!(webhook_name("LicenseEdited"), "license.edited");
        assert_eq!(webhook_name("LicenseCallRateExceeded"), CALL_RATE_EXCEEDED);
        assert_eq!(webhook_name("AnomalyResolved"), "anomaly.resolved");
        assert_eq!(webhook_name("HeartbeatRecorded"), "license.heartbeat");
        assert_eq!(webhook_name("AnomalyDetected"), "anomaly.detected");
        assert_eq!(webhook_name("DeviceBlocked"), "device.blocked");
        assert_eq!(webhook_name("LicenseUsageThresholdReached"), "license.usage_threshold_reached");
    }

    #[test]
    fn patterns_match_names_prefixes_and_everything_but_heartbeats() {
        let all = vec!["*".to_owned()];
        assert!(matches(&all, "license.activated"));
        assert!(!matches(&all, HEARTBEAT));
        let licenses = vec!["license.*".to_owned()];
        assert!(matches(&licenses, "license.revoked"));
        assert!(!matches(&licenses, "anomaly.detected"));
        assert!(!matches(&licenses, HEARTBEAT));
        assert!(matches(&[HEARTBEAT.to_owned()], HEARTBEAT));
        assert!(!matches(&all, USAGE_THRESHOLD) && !matches(&licenses, USAGE_THRESHOLD));
        assert!(matches(&[USAGE_THRESHOLD.to_owned()], USAGE_THRESHOLD));
        assert!(valid_pattern("license.*") && valid_pattern("*") && valid_pattern("anomaly.detected"));
        assert!(!valid_pattern("licence.*") && !valid_pattern("license.activate") && !valid_pattern(""));
    }
}
