-- The append-only event log. sqlite-es reads the first seven columns;
-- keyledger appends (eventlog/src/log.rs) and fills the rest.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        text                         NOT NULL,
    metadata       text                         NOT NULL,
    -- Global position: SQLite has one writer at a time, so positions are
    -- handed out in commit order.
    position       integer NOT NULL UNIQUE,
    event_id       text NOT NULL UNIQUE,
    -- SHA-256 over the previous event's hash of this aggregate and this
    -- event's canonical content: the tamper-evidence chain.
    hash           text NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

-- Unused while the store runs in event-store mode; sqlite-es expects it.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

-- Signed checkpoints of every chain head up to a point of the log, for
-- auditors to keep outside the system (eventlog/src/checkpoint.rs).
CREATE TABLE audit_checkpoints
(
    id         integer PRIMARY KEY,
    body       text NOT NULL,
    signature  text NOT NULL,
    public_key text NOT NULL
) STRICT;
