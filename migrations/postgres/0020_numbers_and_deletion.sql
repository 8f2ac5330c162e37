-- Per-tenant serial numbers as columns, so a license or a customer is found
-- by the integer id the V2 License Server dialect shows (0: made before
-- numbers), and a license's deletion (`LicenseDeleted`), which hides it
-- from every list, search and count while its history stays.
ALTER TABLE license_view ADD COLUMN number bigint NOT NULL DEFAULT 0;
ALTER TABLE license_view ADD COLUMN deleted integer NOT NULL DEFAULT 0;
UPDATE license_view SET number = COALESCE((state::jsonb ->> 'number')::bigint, 0);
CREATE INDEX license_view_by_number ON license_view (tenant_id, number) WHERE number > 0;

ALTER TABLE customer_view ADD COLUMN number bigint NOT NULL DEFAULT 0;
UPDATE customer_view SET number = COALESCE((state::jsonb ->> 'number')::bigint, 0);
CREATE INDEX customer_view_by_number ON customer_view (tenant_id, number) WHERE number > 0;
