-- A license's state every so many events, so loading it for a command
-- costs the events since the last snapshot, not its whole history.
-- Derived and disposable: an unreadable row is ignored and replaced.
CREATE TABLE license_snapshots
(
    license_id text PRIMARY KEY,
    version    bigint NOT NULL,
    -- The shape of `state`; a snapshot of another format is ignored.
    format     integer NOT NULL,
    state      text   NOT NULL
);
