-- The append-only event log. postgres-es reads the first seven columns;
-- keyledger appends (eventlog/src/log.rs) and fills the rest.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- Global position, unique and taken at insert time. Commit order can
    -- differ under concurrent writers, so the tail orders by (txid, position)
    -- and reads only transactions older than every running one.
    position       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    txid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id       text NOT NULL UNIQUE,
    -- SHA-256 over the previous event's hash of this aggregate and this
    -- event's canonical content: the tamper-evidence chain.
    hash           text NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_tail ON events (txid, position);

-- Unused while the store runs in event-store mode; postgres-es expects it.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Signed checkpoints of every chain head up to a point of the log, for
-- auditors to keep outside the system (eventlog/src/checkpoint.rs).
CREATE TABLE audit_checkpoints
(
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text NOT NULL,
    signature  text NOT NULL,
    public_key text NOT NULL
);
