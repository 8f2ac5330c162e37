-- Where each consumer of the tail (the NATS relay, later projection runners)
-- has got to. Saved only after what it covers has been handed on.
CREATE TABLE consumer_checkpoints
(
    name       text PRIMARY KEY,
    txid       integer NOT NULL,
    position   integer NOT NULL,
    updated_at text   NOT NULL
) STRICT;
