//! An endpoint's fields as a person or a client gives them, checked the
//! same way wherever they come from (the API, the panel): each failure
//! names its field.

use super::{check_url, safety, valid_pattern};

/// Most event names (or patterns) an endpoint subscribes to.
pub const MAX_PATTERNS: usize = 50;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 500;

/// A field that was refused, and why (a sentence naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

/// The URL, if it is an http(s) URL keyledger may post to: not a private
/// or loopback address (unless `allow_private`), also once resolved.
pub async fn checked_url(raw: &str, allow_private: bool) -> Result<String, FieldError> {
    let url = check_url(raw, allow_private).map_err(|e| FieldError::new("url", e.to_string()))?;
    safety::check_resolved(&url, allow_private).await.map_err(|e| FieldError::new("url", e.to_string()))?;
    Ok(url.to_string())
}

/// The event names or patterns, each valid, without repeats.
pub fn checked_events(events: Vec<String>) -> Result<Vec<String>, FieldError> {
    if events.is_empty() || events.len() > MAX_PATTERNS {
        return Err(FieldError::new("events", format!("events must list 1 to {MAX_PATTERNS} event names")));
    }
    let mut kept: Vec<String> = Vec::new();
    for (index, pattern) in events.into_iter().enumerate() {
        if !valid_pattern(&pattern) {
            return Err(FieldError::new(
                &format!("events[{index}]"),
                format!("{pattern:?} is not an event name, a prefix such as \"license.*\", or \"*\"; see the README for the names"),
            ));
        }
        if !kept.contains(&pattern) {
            kept.push(pattern);
        }
    }
    Ok(kept)
}

/// The description, if it is short text that can be shown as it is.
pub fn checked_description(description: String) -> Result<String, FieldError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(FieldError::new(
            "description",
            format!("description must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    keyledger_domain::check_display_text(&description)
        .map_err(|e| FieldError::new("description", format!("description: {e}")))?;
    Ok(description)
}
