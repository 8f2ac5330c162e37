-- A tenant's anomaly thresholds and action, stored whole as JSON
-- (app/src/anomalies/settings.rs); a tenant without a row has the defaults.
CREATE TABLE anomaly_settings
(
    tenant_id  text PRIMARY KEY REFERENCES tenants (id),
    settings   text NOT NULL,
    updated_at text NOT NULL
);

-- The anomalies the log holds, read model of its AnomalyDetected and
-- AnomalyResolved events, written by the anomaly detector as it reads
-- them (and by the resolve endpoint, for its caller's next read).
CREATE TABLE anomalies
(
    id              text PRIMARY KEY,
    tenant_id       text    NOT NULL,
    license_id      text    NOT NULL,
    kind            text    NOT NULL,
    -- The event's evidence, as the event holds it.
    evidence        text    NOT NULL,
    detected_at     text    NOT NULL,
    event_id        text    NOT NULL,
    -- The AnomalyDetected event's log position: the list's order.
    position        bigint  NOT NULL,
    resolved_at     text,
    resolved_by     text,
    resolution_note text
);
CREATE INDEX anomalies_by_tenant ON anomalies (tenant_id, position);
CREATE INDEX anomalies_by_license ON anomalies (license_id, position);

-- On a database that already has events, the detector starts at the log's
-- end: what happened before detection existed is not examined (and no
-- license is suspended for it). Deleting this row replays the whole log.
INSERT INTO consumer_checkpoints (name, txid, position, updated_at)
SELECT 'anomaly-detector', txid::text::bigint, position, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM events WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY txid DESC, position DESC LIMIT 1
    ON CONFLICT (name) DO NOTHING;
