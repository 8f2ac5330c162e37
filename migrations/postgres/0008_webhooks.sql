-- Webhook endpoints: a tenant's URLs and the events each wants. The
-- signing secret is sealed with the master key (it must be read back to
-- sign), so a database dump can't forge a delivery.
CREATE TABLE webhook_endpoints
(
    id              text PRIMARY KEY,
    tenant_id       text   NOT NULL REFERENCES tenants (id),
    url             text   NOT NULL,
    description     text   NOT NULL,
    -- JSON array of event names, prefixes ("license.*") or "*".
    events          text   NOT NULL,
    enabled         bigint NOT NULL,
    -- Why it was disabled: manual, gone (it answered 410), failing.
    disabled_reason text,
    secret          text   NOT NULL,
    -- After a rotation the old secret signs too, until this time.
    previous_secret text,
    previous_until  text,
    -- The first failed attempt since the last success.
    failing_since   text,
    created_at      text   NOT NULL,
    updated_at      text   NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, created_at);

-- What must be delivered, recorded before the first attempt. One row per
-- endpoint and event; the row's event id is the `webhook-id` of every
-- attempt. A sender claims due rows for `claimed_until`, so processes
-- share the work and none sends an attempt another is sending.
CREATE TABLE webhook_deliveries
(
    id              text PRIMARY KEY,
    endpoint_id     text   NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       text   NOT NULL,
    event_id        text   NOT NULL,
    event_type      text   NOT NULL,
    -- The exact body every attempt sends.
    payload         text   NOT NULL,
    -- pending, succeeded or failed (gave up).
    status          text   NOT NULL,
    attempts        bigint NOT NULL,
    next_attempt_at text   NOT NULL,
    claimed_until   text,
    created_at      text   NOT NULL,
    updated_at      text   NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);

-- Every attempt, for the delivery log.
CREATE TABLE webhook_attempts
(
    delivery_id   text   NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt       bigint NOT NULL,
    attempted_at  text   NOT NULL,
    -- The HTTP status, or NULL when none came (timeout, connection error).
    status_code   bigint,
    latency_ms    bigint NOT NULL,
    error         text,
    -- The first 2 KiB of the answer.
    response_body text   NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
