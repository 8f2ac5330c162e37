-- What an endpoint's deliveries look like: keyledger's own envelope, or
-- the V2 License Server document's `{event, timestamp, data: {license_id,
-- activation_id, customer_id}}`.
ALTER TABLE webhook_endpoints ADD COLUMN payload_format text NOT NULL DEFAULT 'keyledger';
