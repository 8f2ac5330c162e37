-- The blocks of a dialect's per-route limits (seed 002: an address past a
-- route's budget is blocked from that route, each block twice as long as
-- the one before), shared like address_blocks: a block one process makes
-- holds in every process within about a second, and the block after it,
-- in whichever process, is twice as long.
CREATE TABLE route_blocks
(
    route         text   NOT NULL,
    address       text   NOT NULL,
    -- RFC 3339 in UTC with fixed precision, so text order is time order.
    blocked_until text   NOT NULL,
    -- The length of the next block, if the address runs past the budget
    -- again before a quiet spell resets it.
    next_secs     bigint NOT NULL,
    PRIMARY KEY (route, address)
);
CREATE INDEX route_blocks_until ON route_blocks (blocked_until);
