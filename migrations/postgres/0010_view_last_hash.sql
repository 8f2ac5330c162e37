-- The chain hash of the event a license_view row is at (`version`), so a
-- process that loads its in-memory view from this table after a start
-- can decide a license's next command without first reading the
-- license's events back: an append chains to this hash, and is refused
-- if the log has moved on. Rows written before this column get it with
-- their next write. `state_format` is the snapshot format the row's state
-- was folded under: a hash is only trusted beside a state of the current
-- format, as snapshots of an older one are ignored.
ALTER TABLE license_view ADD COLUMN last_hash text;
ALTER TABLE license_view ADD COLUMN state_format bigint;
