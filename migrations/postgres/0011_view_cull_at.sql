-- When the first device holding a seat of the license will be dead if it
-- keeps silent (its last recorded heartbeat plus its policy's heartbeat
-- duration and a quarter), as sortable RFC 3339 text; empty when the
-- license has no heartbeat policy or no devices. The heartbeat sweep asks
-- for rows at or before now. Rows written before this column get it with
-- their next write; the start-up replay of rows of an older state format
-- rewrites them all.
ALTER TABLE license_view ADD COLUMN cull_at text NOT NULL DEFAULT '';
CREATE INDEX license_view_cull_due ON license_view (cull_at) WHERE cull_at <> '';
