-- Read model of resource pools: one row per tenant, the whole pool as of
-- `version` (its resources, their status and holders), written in the
-- transaction that appends the pool's events.
CREATE TABLE resource_pool_view (
    pool_id    text    PRIMARY KEY,
    tenant_id  text    NOT NULL,
    created_at text    NOT NULL,
    deleted    integer NOT NULL,
    version    bigint  NOT NULL,
    last_hash  text    NOT NULL,
    state      text    NOT NULL
);
