-- Read model of customers: one row per customer, its state as of
-- `version` with that event's chain hash, written in the transaction that
-- appends the customer's events. `name_folded` and `email_folded` are
-- lower case, for search by either.
CREATE TABLE customer_view (
    customer_id  text   PRIMARY KEY,
    tenant_id    text   NOT NULL,
    name_folded  text   NOT NULL,
    email_folded text   NOT NULL,
    created_at   text   NOT NULL,
    deleted      integer NOT NULL,
    version      integer NOT NULL,
    last_hash    text   NOT NULL,
    state        text   NOT NULL
);
CREATE INDEX customer_view_by_tenant ON customer_view (tenant_id, created_at, customer_id);

-- The customer a license was sold to ('' when none), for a customer's
-- licenses. Every license written before customers has none.
ALTER TABLE license_view ADD COLUMN customer_id text NOT NULL DEFAULT '';
CREATE INDEX license_view_by_customer ON license_view (tenant_id, customer_id, created_at, license_id) WHERE customer_id <> '';
