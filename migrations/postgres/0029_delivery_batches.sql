-- Webhook deliveries that succeeded at their first attempt, recorded a
-- batch to a row instead of a row each.
--
-- The dispatcher sends what the log's tail (or JetStream) hands it and
-- records the outcomes in one transaction before it moves its cursor: the
-- event in the log is the record that it must be delivered, so a delivery
-- needs no row before it is tried. Those that succeed go into one row per
-- endpoint and batch; a delivery gets a row of its own in
-- webhook_deliveries only when its first attempt failed (the row carries
-- its retry schedule), when its attempt outlived the batch, or when it was
-- not tried in the batch's time. The delivery log shows both.
CREATE TABLE webhook_delivery_batches
(
    id          bigserial PRIMARY KEY,
    endpoint_id text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- When the batch was dispatched: every delivery in it was created then.
    created_at  text NOT NULL,
    -- JSON array, in event order: {webhookId, event, payload, attemptedAt,
    -- statusCode, latencyMs, responseBody}.
    deliveries  text NOT NULL
);
CREATE INDEX webhook_delivery_batches_by_endpoint ON webhook_delivery_batches (endpoint_id, created_at);
-- A batch row holds up to a few hundred bodies: stored as they are, not
-- compressed, since compressing them cost a busy dispatcher more CPU than
-- the disk it saves is worth.
ALTER TABLE webhook_delivery_batches ALTER COLUMN deliveries SET STORAGE EXTERNAL;
