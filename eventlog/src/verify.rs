//! `audit verify`: recomputes every chain of the log from its stored rows.
//!
//! The log is read chain by chain ([`EventLog::in_key_order`]), so each
//! chain is checked as it streams past and memory stays flat whatever the
//! log's size; key ranges are read at once on connections of their own,
//! which keeps every core busy hashing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::chain::{chain_hash, ChainedContent};
use crate::{each_range, EventLog, EventLogError, KeyRange, StoredEvent, AGGREGATE_TYPE};

/// What went wrong with one license's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChainBreak {
    /// The sequence jumps: events were removed or renumbered.
    Gap { expected: i64, found: i64 },
    /// The stored hash does not match the content and the previous hash:
    /// the event was edited or moved.
    HashMismatch { sequence: i64 },
    /// Global positions do not rise with the sequence: events were
    /// reordered in the log.
    PositionOutOfOrder { sequence: i64 },
    /// A license asked for by id has no events at all.
    NoEvents,
}

/// The first broken link of a license's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenChain {
    pub aggregate_type: String,
    /// The aggregate's id.
    pub license_id: String,
    #[serde(flatten)]
    pub first_break: ChainBreak,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// License chains checked.
    pub licenses: usize,
    /// Chains of other aggregates (products) checked.
    pub other_chains: usize,
    pub events: usize,
    pub broken: Vec<BrokenChain>,
}

impl EventLog {
    /// Recomputes every chain of every aggregate (or one license's) from
    /// the stored rows and reports the first broken link of each broken
    /// chain, in the order of the aggregates' types and ids.
    pub async fn verify(&self, license_id: Option<&str>) -> Result<VerifyReport, EventLogError> {
        self.verify_counting(license_id, Arc::default()).await
    }

    /// As [`EventLog::verify`], adding each event checked to `checked` as
    /// it goes, for a progress bar.
    pub async fn verify_counting(
        &self,
        license_id: Option<&str>,
        checked: Arc<AtomicU64>,
    ) -> Result<VerifyReport, EventLogError> {
        if let Some(id) = license_id {
            let events = self.aggregate_history(AGGREGATE_TYPE, id, i64::MIN, i64::MAX).await?;
            checked.fetch_add(events.len() as u64, Ordering::Relaxed);
            let mut report = VerifyReport::default();
            let mut chain = ChainCheck::new(AGGREGATE_TYPE, id);
            for event in &events {
                chain.check(event.sequence, event.position, &event.hash, |previous| {
                    Ok(chain_hash(
                        previous,
                        &ChainedContent {
                            aggregate_id: &event.license_id,
                            sequence: event.sequence,
                            event_id: &event.event_id,
                            event_type: &event.event_type,
                            event_version: &event.event_version,
                            payload: &event.payload,
                            metadata: &event.metadata,
                        },
                    ))
                })?;
            }
            chain.finish(&mut report);
            return Ok(report);
        }
        let ranges = KeyRange::for_this_machine(self.database().max_connections());
        let parts = each_range(ranges, |range| {
            let (log, checked) = (self.clone(), checked.clone());
            async move { log.verify_range(&range, &checked).await }
        })
        .await?;
        let mut report = VerifyReport::default();
        for part in parts {
            report.licenses += part.licenses;
            report.other_chains += part.other_chains;
            report.events += part.events;
            report.broken.extend(part.broken);
        }
        Ok(report)
    }

    /// The chains of one key range, checked one after another as their
    /// events stream past.
    async fn verify_range(&self, range: &KeyRange, checked: &AtomicU64) -> Result<VerifyReport, EventLogError> {
        let text_is_canonical = matches!(self.database(), crate::Database::Sqlite(_));
        let mut events = self.in_key_order(range);
        let mut report = VerifyReport::default();
        let mut chain: Option<ChainCheck> = None;
        let mut unreported = 0;
        while let Some(event) = events.try_next().await? {
            let chain = match &mut chain {
                Some(chain) if chain.is_of(&event) => chain,
                _ => {
                    if let Some(done) = chain.take() {
                        done.finish(&mut report);
                    }
                    chain.insert(ChainCheck::new(&event.aggregate_type, &event.aggregate_id))
                }
            };
            chain.check(event.sequence, event.position, &event.hash, |previous| {
                stored_hash(previous, &event, text_is_canonical)
            })?;
            // The shared counter is touched once per thousand events.
            unreported += 1;
            if unreported == 1_000 {
                checked.fetch_add(unreported, Ordering::Relaxed);
                unreported = 0;
            }
        }
        checked.fetch_add(unreported, Ordering::Relaxed);
        if let Some(done) = chain.take() {
            done.finish(&mut report);
        }
        Ok(report)
    }
}

/// The chain hash `event` should have after `previous`. Where the stored
/// text is already canonical JSON (`text_is_canonical`: SQLite keeps
/// serde_json's own compact, key-sorted text), it is hashed as it is,
/// without building a tree of it; only when that does not give the stored
/// hash is it parsed and written out canonically. Sound either way: text
/// that hashes to the stored hash is byte for byte the canonical text the
/// hash was made of.
fn stored_hash(previous: &str, event: &StoredEvent, text_is_canonical: bool) -> Result<String, EventLogError> {
    if text_is_canonical {
        let raw = |text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok();
        if let (Some(payload), Some(metadata)) = (raw(&event.payload), raw(&event.metadata)) {
            let hash = chain_hash(previous, &content(event, payload, metadata));
            if hash == event.hash {
                return Ok(hash);
            }
        }
    }
    parsed_hash(previous, event)
}

/// The chain hash `event` should have after `previous`, from its payload
/// and metadata parsed and written out canonically.
fn parsed_hash(previous: &str, event: &StoredEvent) -> Result<String, EventLogError> {
    let json = |what: &str, text: &str| -> Result<Value, EventLogError> {
        serde_json::from_str(text).map_err(|error| {
            EventLogError::Corrupt(format!(
                "the {what} of event {} of {} {} is not JSON: {error}",
                event.sequence, event.aggregate_type, event.aggregate_id
            ))
        })
    };
    let (payload, metadata) = (json("payload", &event.payload)?, json("metadata", &event.metadata)?);
    Ok(chain_hash(previous, &content(event, &payload, &metadata)))
}

/// What the chain hash of `event` covers, with its payload and metadata
/// as given (parsed values, or text already canonical).
fn content<'a, J: ?Sized>(event: &'a StoredEvent, payload: &'a J, metadata: &'a J) -> ChainedContent<'a, J> {
    ChainedContent {
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_id: &event.event_id,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload,
        metadata,
    }
}

/// One chain's check, fed its events in sequence order: it keeps only the
/// last hash and position, and the first break found.
struct ChainCheck {
    aggregate_type: String,
    aggregate_id: String,
    events: usize,
    previous_hash: String,
    previous_position: i64,
    first_break: Option<ChainBreak>,
}

impl ChainCheck {
    fn new(aggregate_type: &str, aggregate_id: &str) -> Self {
        Self {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            events: 0,
            previous_hash: String::new(),
            previous_position: i64::MIN,
            first_break: None,
        }
    }

    fn is_of(&self, event: &StoredEvent) -> bool {
        self.aggregate_id == event.aggregate_id && self.aggregate_type == event.aggregate_type
    }

    /// Checks the chain's next event: its sequence, its hash (`recompute`
    /// gives the hash it should have after the previous one) and its
    /// position. After the first break the rest is only counted.
    fn check(
        &mut self,
        sequence: i64,
        position: i64,
        hash: &str,
        recompute: impl FnOnce(&str) -> Result<String, EventLogError>,
    ) -> Result<(), EventLogError> {
        self.events += 1;
        if self.first_break.is_some() {
            return Ok(());
        }
        let expected = self.events as i64;
        if sequence != expected {
            self.first_break = Some(ChainBreak::Gap { expected, found: sequence });
            return Ok(());
        }
        let recomputed = recompute(&self.previous_hash)?;
        if recomputed != hash {
            self.first_break = Some(ChainBreak::HashMismatch { sequence });
            return Ok(());
        }
        // Each append waits for the one before to commit, so positions rise.
        if position <= self.previous_position {
            self.first_break = Some(ChainBreak::PositionOutOfOrder { sequence });
            return Ok(());
        }
        self.previous_hash = recomputed;
        self.previous_position = position;
        Ok(())
    }

    fn finish(self, report: &mut VerifyReport) {
        if self.aggregate_type == AGGREGATE_TYPE {
            report.licenses += 1;
        } else {
            report.other_chains += 1;
        }
        report.events += self.events;
        let first_break = if self.events == 0 { Some(ChainBreak::NoEvents) } else { self.first_break };
        if let Some(first_break) = first_break {
            report.broken.push(BrokenChain {
                aggregate_type: self.aggregate_type,
                license_id: self.aggregate_id,
                first_break,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(payload: &str, metadata: &str, hash: &str) -> StoredEvent {
        StoredEvent {
            position: 7,
            event_id: "e-1".into(),
            aggregate_type: AGGREGATE_TYPE.into(),
            aggregate_id: "lic-1".into(),
            sequence: 1,
            event_type: "LicenseActivated".into(),
            event_version: "1".into(),
            payload: payload.into(),
            metadata: metadata.into(),
            hash: hash.into(),
        }
    }

    /// The hash the log gave the event: over its values, canonically.
    fn hash_of(payload: &Value, metadata: &Value) -> String {
        let event = stored(&payload.to_string(), &metadata.to_string(), "");
        parsed_hash("prev", &event).unwrap()
    }

    #[test]
    fn canonical_text_is_hashed_as_it_is_and_any_other_text_is_parsed() {
        let payload = json!({"zeta": [1, 2, {"b": null, "a": "x\"y"}], "alpha": 1.5, "unicode": "é"});
        let metadata = json!({"occurred_at": "2026-12-07T00:00:00Z"});
        let hash = hash_of(&payload, &metadata);

        // serde_json's own text (what SQLite keeps) takes the short way.
        let canonical = stored(&payload.to_string(), &metadata.to_string(), &hash);
        assert_eq!(stored_hash("prev", &canonical, true).unwrap(), hash);
        // The same values written otherwise (as PostgreSQL's jsonb prints
        // them) are parsed, and still give the hash.
        let spaced = r#"{"alpha": 1.5, "unicode": "\u00e9", "zeta": [1, 2, {"a": "x\"y", "b": null}]}"#;
        let other = stored(spaced, r#"{ "occurred_at" : "2026-12-07T00:00:00Z" }"#, &hash);
        assert_eq!(stored_hash("prev", &other, true).unwrap(), hash);
        assert_eq!(stored_hash("prev", &other, false).unwrap(), hash);
        // An edit is caught either way.
        let edited = stored(&payload.to_string().replace("1.5", "2.5"), &metadata.to_string(), &hash);
        assert_ne!(stored_hash("prev", &edited, true).unwrap(), hash);
        assert_ne!(stored_hash("other", &canonical, true).unwrap(), hash);
    }
}
