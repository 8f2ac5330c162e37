-- Read model of products: one row per product, its state as of `version`
-- with that event's chain hash, written in the transaction that appends
-- the product's events. A tenant's live products have distinct codes.
CREATE TABLE product_view (
    product_id  text   PRIMARY KEY,
    tenant_id   text   NOT NULL,
    code        text   NOT NULL,
    created_at  text   NOT NULL,
    deleted     integer NOT NULL,
    version     integer NOT NULL,
    last_hash   text   NOT NULL,
    state       text   NOT NULL
);
CREATE UNIQUE INDEX product_view_code ON product_view (tenant_id, code) WHERE deleted = 0;
CREATE INDEX product_view_by_tenant ON product_view (tenant_id, created_at, product_id);
