//! The tamper-evidence chain: each event's hash covers the previous
//! event's hash of the same license and the event's own canonical content,
//! so editing, removing or reordering a stored event breaks every hash
//! after it.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the hash covers: everything a reader is told about the event
/// except its global position, which the database assigns.
pub struct ChainedContent<'a> {
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

/// `hex(SHA-256(previous_hash || "\n" || canonical JSON of content))`; the
/// first event of a license chains to the empty string. serde_json writes
/// object keys sorted, so the JSON text is canonical.
pub fn chain_hash(previous_hash: &str, content: &ChainedContent<'_>) -> String {
    let canonical = json!({
        "aggregate_id": content.aggregate_id,
        "sequence": content.sequence,
        "event_id": content.event_id,
        "event_type": content.event_type,
        "event_version": content.event_version,
        "payload": content.payload,
        "metadata": content.metadata,
    })
    .to_string();
    let mut digest = Sha256::new();
    digest.update(previous_hash.as_bytes());
    digest.update(b"\n");
    digest.update(canonical.as_bytes());
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(payload: &'a Value, metadata: &'a Value) -> ChainedContent<'a> {
        ChainedContent {
            aggregate_id: "lic-1",
            sequence: 1,
            event_id: "e-1",
            event_type: "LicenseGenerated",
            event_version: "1.0",
            payload,
            metadata,
        }
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"x": 1, "y": {"b": 2, "a": 1}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y": {"a": 1, "b": 2}, "x": 1}"#).unwrap();
        let m = json!({});
        assert_eq!(chain_hash("", &content(&a, &m)), chain_hash("", &content(&b, &m)));
    }

    #[test]
    fn the_hash_covers_content_and_the_previous_hash() {
        let p = json!({"x": 1});
        let m = json!({"actor_role": "user"});
        let base = chain_hash("", &content(&p, &m));
        assert_ne!(base, chain_hash("other", &content(&p, &m)));
        assert_ne!(base, chain_hash("", &content(&json!({"x": 2}), &m)));
        assert_ne!(base, chain_hash("", &content(&p, &json!({"actor_role": "admin"}))));
        let mut moved = content(&p, &m);
        moved.sequence = 2;
        assert_ne!(base, chain_hash("", &moved));
    }
}
