//! Signed checkpoints of the log: at a point of the tail, a SHA-256 digest
//! over every license's chain head, signed with Ed25519.
//!
//! The hash chains show an edit or a gap, but not the removal of a
//! license's newest events. A checkpoint that an auditor keeps outside the
//! system does: if any event up to its point is later changed or removed,
//! the heads recomputed from the log no longer match its digest. The
//! signing key never lives in the database, so whoever can rewrite the log
//! can't re-sign checkpoints to match.

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::log::AGGREGATE_TYPE;
use crate::{on_pool, Cursor, Database, EventLogError};

/// What is signed: the canonical JSON text of this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointBody {
    /// Every event at or before this point of the tail is covered.
    pub cursor: CheckpointCursor,
    pub licenses: i64,
    pub events: i64,
    pub created_at: String,
    /// SHA-256 over `"<license id> <sequence> <hash>\n"` of each license's
    /// last covered event, sorted by license id.
    pub heads_digest: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCursor {
    pub txid: i64,
    pub position: i64,
}

/// A checkpoint as handed to auditors. Hex encodes the signature and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedCheckpoint {
    pub body: CheckpointBody,
    pub signature: String,
    pub public_key: String,
}

/// The result of checking the log against a kept checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CheckpointCheck {
    /// The signature holds and the log still has exactly those heads.
    Matches,
    /// The checkpoint itself is not what the key signed.
    BadSignature,
    /// Signed by a key other than the one the auditor trusts.
    UnexpectedKey { found: String },
    /// Events covered by the checkpoint were changed or removed.
    LogDiffers { heads_digest_now: String },
}

impl CheckpointBody {
    fn signed_bytes(&self) -> Vec<u8> {
        // serde_json writes struct fields in declaration order and these
        // values carry no maps, so the text is reproducible.
        serde_json::to_vec(self).expect("a checkpoint body serialises")
    }
}

/// Makes, stores, lists and checks checkpoints.
#[derive(Clone)]
pub struct Checkpoints {
    db: Database,
    key: SigningKey,
}

impl Checkpoints {
    pub fn new(db: Database, key: SigningKey) -> Self {
        Self { db, key }
    }

    /// A signing key from 32 bytes of hex (the form of
    /// `KEYLEDGER_SIGNING_KEY` and the key file).
    pub fn key_from_hex(hex_key: &str) -> Option<SigningKey> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
        Some(SigningKey::from_bytes(&bytes))
    }

    pub fn generate_key_hex() -> String {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        hex::encode(bytes)
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Signs and stores a checkpoint of the log up to the end of the tail.
    /// None while the log is empty.
    pub async fn create(&self, now: DateTime<Utc>) -> Result<Option<SignedCheckpoint>, EventLogError> {
        let Some(cursor) = crate::EventLog::new(self.db.clone()).end_cursor().await? else { return Ok(None) };
        let (licenses, events, heads_digest) = self.heads_at(cursor).await?;
        let body = CheckpointBody {
            cursor: CheckpointCursor { txid: cursor.txid, position: cursor.position },
            licenses,
            events,
            created_at: now.to_rfc3339_opts(SecondsFormat::Micros, true),
            heads_digest,
        };
        let signature = hex::encode(self.key.sign(&body.signed_bytes()).to_bytes());
        let signed = SignedCheckpoint { body, signature, public_key: self.public_key_hex() };
        const INSERT: &str = "INSERT INTO audit_checkpoints (body, signature, public_key) VALUES ($1, $2, $3)";
        let body_json = serde_json::to_string(&signed.body).expect("a checkpoint body serialises");
        on_pool!(&self.db, pool => sqlx::query(INSERT)
            .bind(&body_json)
            .bind(&signed.signature)
            .bind(&signed.public_key)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(Some(signed))
    }

    /// The newest `limit` checkpoints, newest first.
    pub async fn list(&self, limit: i64) -> Result<Vec<SignedCheckpoint>, EventLogError> {
        const SQL: &str = "SELECT body, signature, public_key FROM audit_checkpoints ORDER BY id DESC LIMIT $1";
        let rows: Vec<(String, String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(limit).fetch_all(pool).await)?;
        rows.into_iter()
            .map(|(body, signature, public_key)| {
                let body = serde_json::from_str(&body).map_err(|source| EventLogError::Undecodable {
                    what: "the body of a kept checkpoint".to_owned(),
                    source,
                })?;
                Ok(SignedCheckpoint { body, signature, public_key })
            })
            .collect()
    }

    /// Checks a kept checkpoint: that `trusted_key` (the auditor's copy of
    /// the public key, never the one the checkpoint names) signed it, then
    /// the log's heads and event count up to its point.
    pub async fn check(
        &self,
        checkpoint: &SignedCheckpoint,
        trusted_key: &str,
    ) -> Result<CheckpointCheck, EventLogError> {
        if !trusted_key.trim().eq_ignore_ascii_case(&checkpoint.public_key) {
            return Ok(CheckpointCheck::UnexpectedKey { found: checkpoint.public_key.clone() });
        }
        if !signature_holds(checkpoint) {
            return Ok(CheckpointCheck::BadSignature);
        }
        let cursor = Cursor { txid: checkpoint.body.cursor.txid, position: checkpoint.body.cursor.position };
        let (_, events_now, heads_digest_now) = self.heads_at(cursor).await?;
        if heads_digest_now == checkpoint.body.heads_digest && events_now == checkpoint.body.events {
            Ok(CheckpointCheck::Matches)
        } else {
            Ok(CheckpointCheck::LogDiffers { heads_digest_now })
        }
    }

    /// (licenses, events, heads digest) of the log up to `cursor`. The
    /// digest covers every aggregate's head: licenses' as `id sequence
    /// hash` lines first, as before other aggregates existed (so a
    /// checkpoint of such a log still checks), then the others' as
    /// `Type:id sequence hash`.
    async fn heads_at(&self, cursor: Cursor) -> Result<(i64, i64, String), EventLogError> {
        let covered = match &self.db {
            Database::Postgres(_) => "(txid, position) <= ($1::bigint::text::xid8, $2)",
            Database::Sqlite(_) => "position <= $2",
        };
        let heads_sql = format!(
            "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.hash FROM events e
               JOIN (SELECT aggregate_type, aggregate_id, MAX(sequence) AS sequence FROM events WHERE {covered}
                      GROUP BY aggregate_type, aggregate_id) h
                 ON e.aggregate_type = h.aggregate_type AND e.aggregate_id = h.aggregate_id AND e.sequence = h.sequence
              ORDER BY e.aggregate_type <> '{AGGREGATE_TYPE}', e.aggregate_type, e.aggregate_id"
        );
        let count_sql = format!("SELECT COUNT(*) FROM events WHERE {covered}");
        let (heads, events): (Vec<(String, String, i64, String)>, i64) = on_pool!(&self.db, pool => {
            let heads = sqlx::query_as(&heads_sql).bind(cursor.txid).bind(cursor.position).fetch_all(pool).await?;
            let events =
                sqlx::query_scalar(&count_sql).bind(cursor.txid).bind(cursor.position).fetch_one(pool).await?;
            (heads, events)
        });
        let mut digest = Sha256::new();
        let mut licenses = 0;
        for (aggregate_type, id, sequence, hash) in &heads {
            if aggregate_type == AGGREGATE_TYPE {
                licenses += 1;
                digest.update(format!("{id} {sequence} {hash}\n").as_bytes());
            } else {
                digest.update(format!("{aggregate_type}:{id} {sequence} {hash}\n").as_bytes());
            }
        }
        Ok((licenses, events, hex::encode(digest.finalize())))
    }
}

fn signature_holds(checkpoint: &SignedCheckpoint) -> bool {
    let key: Option<[u8; 32]> = hex::decode(&checkpoint.public_key).ok().and_then(|b| b.try_into().ok());
    let signature: Option<[u8; 64]> = hex::decode(&checkpoint.signature).ok().and_then(|b| b.try_into().ok());
    let (Some(key), Some(signature)) = (key, signature) else { return false };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    key.verify(&checkpoint.body.signed_bytes(), &Signature::from_bytes(&signature)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &SigningKey) -> SignedCheckpoint {
        let body = CheckpointBody {
            cursor: CheckpointCursor { txid: 7, position: 42 },
            licenses: 3,
            events: 9,
            created_at: "2026-11-22T10:00:00.000000Z".into(),
            heads_digest: "ab".repeat(32),
        };
        let signature = hex::encode(key.sign(&body.signed_bytes()).to_bytes());
        SignedCheckpoint { body, signature, public_key: hex::encode(key.verifying_key().to_bytes()) }
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_survives_json() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let checkpoint = signed(&key);
        assert!(signature_holds(&checkpoint));
        let kept: SignedCheckpoint = serde_json::from_str(&serde_json::to_string(&checkpoint).unwrap()).unwrap();
        assert!(signature_holds(&kept));
    }

    #[test]
    fn any_change_to_a_checkpoint_breaks_its_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut checkpoint = signed(&key);
        checkpoint.body.events += 1;
        assert!(!signature_holds(&checkpoint));
        let mut checkpoint = signed(&key);
        checkpoint.public_key = hex::encode(SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes());
        assert!(!signature_holds(&checkpoint));
        let mut checkpoint = signed(&key);
        checkpoint.signature = "00".repeat(64);
        assert!(!signature_holds(&checkpoint));
    }
}
