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
);
CREATE INDEX signing_keys_by_tenant ON signing_keys (tenant_id, created_at);

-- Whether the tenant's licenses answer anonymous client calls.
ALTER TABLE tenants ADD COLUMN require_client_key bigint NOT NULL DEFAULT 0;

-- Client keys: publishable, for the client endpoints only.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('admin', 'user', 'client'));

-- Bumped with every change that processes cache (signing keys, tenant
-- settings, revoked API keys), so each can tell in one cheap read that its
-- copy is stale.
CREATE TABLE directory_version
(
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);

-- Progressive blocks of client addresses, shared by every process.
CREATE TABLE address_blocks
(
    address       text PRIMARY KEY,
    -- How many blocks in a row; each lasts twice the one before.
    level         bigint  NOT NULL,
    blocked_until text    NOT NULL
);
CREATE INDEX address_blocks_until ON address_blocks (blocked_until);
