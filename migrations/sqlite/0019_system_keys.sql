-- A tenant's system key: the V2 License Server dialect's `X-API-Key`
-- (`AF-YYYY-` and 32 random characters). One row per tenant, written in
-- the same transaction as the `SystemKeyIssued` event that records it, so
-- issuing a new key replaces (revokes) the old one at once. Only the
-- key's SHA-256 is kept; it is what a presented key is looked up by.
CREATE TABLE system_keys (
    tenant_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
