-- Read model of leads (institutions a vendor sells to): one row per lead,
-- its state as of `version`, written in the transaction that appends the
-- lead's events. `lead_type` for counts by type.
CREATE TABLE lead_view (
    lead_id    text    PRIMARY KEY,
    tenant_id  text    NOT NULL,
    lead_type  text    NOT NULL,
    number     bigint  NOT NULL,
    created_at text    NOT NULL,
    deleted    integer NOT NULL,
    version    bigint  NOT NULL,
    last_hash  text    NOT NULL,
    state      text    NOT NULL
);
CREATE INDEX lead_view_by_tenant ON lead_view (tenant_id, created_at, lead_id);
