//! The tamper-evidence chain: each event's hash covers the previous
//! event's hash of the same license and the event's own canonical content,
//! so editing, removing or reordering a stored event breaks every hash
//! after it.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What the hash covers: everything a reader is told about the event
/// except its global position, which the database assigns. The payload
/// and metadata are JSON values, or (`J` = `RawValue`) JSON text already in
/// canonical form, written as it is.
pub struct ChainedContent<'a, J: ?Sized = Value> {
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a J,
    pub metadata: &'a J,
}

/// `hex(SHA-256(previous_hash || "\n" || canonical JSON of content))`; the
/// first event of a license chains to the empty string. serde_json writes
/// object keys sorted, so the JSON text is canonical.
pub fn chain_hash<J: Serialize + ?Sized>(previous_hash: &str, content: &ChainedContent<'_, J>) -> String {
    let mut digest = Sha256::new();
    digest.update(previous_hash.as_bytes());
    digest.update(b"\n");
    // Written straight into the digest: no copy of the payload, no text.
    serde_json::to_writer(DigestWriter(&mut digest), &Canonical::of(content))
        .expect("JSON values and strings always serialise");
    hex::encode(digest.finalize())
}

/// The content as the canonical JSON object, its keys in sorted order as
/// serde_json's own maps write theirs (the order is the hash's contract:
/// see the test against a `json!` object).
#[derive(Serialize)]
struct Canonical<'a, J: ?Sized> {
    aggregate_id: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    event_version: &'a str,
    metadata: &'a J,
    payload: &'a J,
    sequence: i64,
}

impl<'a, J: ?Sized> Canonical<'a, J> {
    fn of(content: &ChainedContent<'a, J>) -> Self {
        Self {
            aggregate_id: content.aggregate_id,
            event_id: content.event_id,
            event_type: content.event_type,
            event_version: content.event_version,
            metadata: content.metadata,
            payload: content.payload,
            sequence: content.sequence,
        }
    }
}

struct DigestWriter<'a>(&'a mut Sha256);

impl std::io::Write for DigestWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_canonical_text_is_a_json_object_with_sorted_keys() {
        let payload = json!({"LicenseActivated": {"machine": "m", "activated_at": "2026-01-01T00:00:00Z", "details": {"z": 1, "a": [1, {"y": null, "b": "\u{e9}\\"}]}}});
        let metadata = json!({"actor_role": "user", "actor_key_id": "k"});
        let content = content(&payload, &metadata);
        let expected = json!({
            "aggregate_id": content.aggregate_id,
            "sequence": content.sequence,
            "event_id": content.event_id,
            "event_type": content.event_type,
            "event_version": content.event_version,
            "payload": content.payload,
            "metadata": content.metadata,
        })
        .to_string();
        assert_eq!(serde_json::to_string(&Canonical::of(&content)).unwrap(), expected);
        let mut digest = Sha256::new();
        digest.update(b"prev\n");
        digest.update(expected.as_bytes());
        assert_eq!(chain_hash("prev", &content), hex::encode(digest.finalize()));
    }

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
