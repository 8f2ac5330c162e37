-- Tenants' signing keys (and the platform's, tenant_id NULL). The private
-- key is sealed with the master key, which never enters the database, so a
-- dump of this table can't sign anything.
CREATE TABLE signing_keys
(
    kid         text PRIMARY KEY,
    tenant_id   text REFERENCES tenants (id),
    algorithm   text NOT NULL,
    -- The raw public key, base64url without padding (a JWK's `x`).
    public_key  text NOT NULL,
    -- base64 of nonce || ChaCha20-Poly1305 ciphertext of the private key.
    private_key text NOT NULL,
    created_at  text NOT NULL,
    retired_at  text
) STRICT;
CREATE INDEX signing_keys_by_tenant ON signing_keys (tenant_id, created_at);

-- Whether the tenant's licenses answer anonymous client calls.
ALTER TABLE tenants ADD COLUMN require_client_key integer NOT NULL DEFAULT 0;

-- Client keys: publishable, for the client endpoints only. SQLite can't
-- change a CHECK constraint, so the table is rebuilt.
CREATE TABLE api_keys_new
(
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    user_id     text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'user', 'client')),
    name        text NOT NULL,
    secret_hash text NOT NULL,
    created_at  text NOT NULL,
    revoked_at  text
) STRICT;
INSERT INTO api_keys_new SELECT id, tenant_id, user_id, role, name, secret_hash, created_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

-- Bumped with every change that processes cache (signing keys, tenant
-- settings, revoked API keys), so each can tell in one cheap read that its
-- copy is stale.
CREATE TABLE directory_version
(
    id      integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
) STRICT;
INSERT INTO directory_version (id, version) VALUES (1, 0);

-- Progressive blocks of client addresses, shared by every process.
CREATE TABLE address_blocks
(
    address       text PRIMARY KEY,
    -- How many blocks in a row; each lasts twice the one before.
    level         integer NOT NULL,
    blocked_until text    NOT NULL
) STRICT;
CREATE INDEX address_blocks_until ON address_blocks (blocked_until);
