-- Machines activated through the Keygen dialect: their fingerprints as the
-- client sent them, sealed with the master key. The log keeps only a
-- machine's keyed hash; Keygen's clients need the fingerprint shown back
-- (a machine's `fingerprint`) and machine files encrypted with it. One row
-- a device (`device_id` is the device's id on its license).
CREATE TABLE keygen_fingerprints (
    device_id   text PRIMARY KEY,
    tenant_id   text NOT NULL,
    license_id  text NOT NULL,
    sealed      text NOT NULL,
    created_at  text NOT NULL
);
CREATE INDEX keygen_fingerprints_by_license ON keygen_fingerprints (license_id);
