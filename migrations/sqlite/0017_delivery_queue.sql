-- The queue of webhook deliveries in two partial indexes instead of one.
--
-- Deliveries the dispatcher hands straight to its sender are written
-- already claimed and, once sent, leave the queue. Under the one index of
-- every pending row, each of them left a dead entry behind, which every
-- claim of due rows walked over (and, on PostgreSQL, visited in the table)
-- until a vacuum removed it: under a steady stream of webhooks the sender's
-- queries grew to a tenth of a second each and half the database's work.
--
-- `webhook_deliveries_queue` holds only what waits for a sender: pending
-- and unclaimed (queued, handed back, or due for a retry). Claims that run
-- out (a process died mid-attempt) are found through
-- `webhook_deliveries_claims`, which a sender reads only every few seconds.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending' AND claimed_until IS NULL;
CREATE INDEX webhook_deliveries_claims ON webhook_deliveries (claimed_until)
    WHERE status = 'pending' AND claimed_until IS NOT NULL;
