-- Read model: one row per license, the license state as of `version`
-- (its last applied event sequence). Rows only move forward in version.
CREATE TABLE license_view
(
    license_id  text   PRIMARY KEY,
    tenant_id   text   NOT NULL,
    owner_id    text   NOT NULL,
    license_key text   NOT NULL UNIQUE,
    version     bigint NOT NULL,
    created_at  text   NOT NULL,
    -- RFC 3339 in UTC with fixed precision, so text order is time order.
    expires_at  text   NOT NULL,
    -- 1 once a LicenseExpired event is in the log (even under a suspension).
    expiry_recorded integer NOT NULL,
    state       text   NOT NULL
);
CREATE INDEX license_view_by_owner ON license_view (tenant_id, owner_id, created_at);
CREATE INDEX license_view_by_tenant ON license_view (tenant_id, created_at, license_id);
CREATE INDEX license_view_expiry_due ON license_view (expires_at) WHERE expiry_recorded = 0;
