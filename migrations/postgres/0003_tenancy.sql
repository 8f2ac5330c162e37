CREATE TABLE tenants
(
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at text NOT NULL
);

-- API keys are stored as the SHA-256 of their secret part only.
CREATE TABLE api_keys
(
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id),
    user_id     text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'user')),
    name        text NOT NULL,
    secret_hash text NOT NULL,
    created_at  text NOT NULL,
    revoked_at  text
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

-- Server-wide secrets that every process sharing this database must agree
-- on (the machine-id HMAC key), created once by whichever process is first.
CREATE TABLE server_secrets
(
    name  text PRIMARY KEY,
    value text NOT NULL
);
