-- Every activation, validation-with-a-heartbeat and admin change rewrites
-- one license_view row in the same statement as its events. With room
-- left on each page PostgreSQL rewrites the row in place (a HOT update)
-- instead of adding an entry to each of the table's five indexes, which
-- on a full page it must. New pages get the room; pages written before
-- this migration get it as they are rewritten.
ALTER TABLE license_view SET (fillfactor = 70);

-- `position` comes from an identity column that refuses explicit values
-- (GENERATED ALWAYS), so it is unique without an index of its own; every
-- reader orders the log by (txid, position), which `events_tail` indexes.
-- The index cost each append one more write at the same right-most page
-- that every concurrent append was writing.
ALTER TABLE events DROP CONSTRAINT events_position_key;
