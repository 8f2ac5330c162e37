#!/usr/bin/env bash
# What PostgreSQL itself spends on one webhook delivery's rows, with no
# client, network, parsing or commit in the figure: a lower bound on the
# database's share of a delivery.
#
#   bench/sql/delivery_rows.sh [admin URL]   (default postgres://postgres@127.0.0.1:5432/postgres)
#
# It makes a scratch database with keyledger's PostgreSQL schema, then, in
# one server-side loop, 600 batches of 64 deliveries as the webhook worker
# writes them: the delivery rows (dispatcher), the update of each after its
# first attempt, and the attempt rows (sender), the last two as the same
# multi-row VALUES statements the sender sends. It prints microseconds a
# row for each, and drops the database.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
admin=${1:-postgres://postgres@127.0.0.1:5432/postgres}
db=kl_delivery_rows_$$
scratch=$(sed -E "s#/[^/?]*(\?|$)#/$db\1#" <<<"$admin")
psql -qX "$admin" -c "CREATE DATABASE $db"
trap 'psql -qX "$admin" -c "DROP DATABASE IF EXISTS $db"' EXIT
for migration in migrations/postgres/*.sql; do
  psql -qX -v ON_ERROR_STOP=1 "$scratch" -f "$migration" >/dev/null
done
psql -qX -v ON_ERROR_STOP=1 "$scratch" <<'SQL'
INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'bench', '2026-01-01T00:00:00.000000Z');
INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, enabled, secret, created_at, updated_at)
VALUES ('e1', 't1', 'https://example.com/hooks', '', '["license.activated"]', 1, 'sealed', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z');
DO $$
DECLARE
  batches CONSTANT int := 600;
  rows CONSTANT int := 64;
  b int;
  t0 timestamptz;
  statement text;
  inserted interval := '0';
  updated interval := '0';
  attempts interval := '0';
  -- A body of a delivery's size, of mixed text so it compresses like one.
  body text := (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 22) i);
BEGIN
  FOR b IN 0 .. batches - 1 LOOP
    t0 := clock_timestamp();
    INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, status, attempts,
                                    next_attempt_at, claimed_until, created_at, updated_at)
    SELECT 'd' || (b * rows + i), 'e1', 't1', 'ev' || (b * rows + i), 'license.activated', body || i, 'pending', 0,
           '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:30.000000Z', '2026-01-01T00:00:00.000000Z',
           '2026-01-01T00:00:00.000000Z'
      FROM generate_series(1, rows) i
    ON CONFLICT DO NOTHING;
    inserted := inserted + (clock_timestamp() - t0);
    -- The statement's text is built outside the timing, as the sender
    -- builds it; the figure still includes parsing and planning it.
    statement := (SELECT format('UPDATE webhook_deliveries SET attempts = v.column2, status = v.column3,
                                   next_attempt_at = v.column4, claimed_until = NULL, updated_at = v.column5
                              FROM (VALUES %s) AS v
                             WHERE webhook_deliveries.id = v.column1 AND webhook_deliveries.claimed_until = v.column6',
                            string_agg(format('(%L, 1, %L, %L, %L, %L)', 'd' || (b * rows + i), 'succeeded',
                                              '2026-01-01T00:00:01.000000Z', '2026-01-01T00:00:01.000000Z',
                                              '2026-01-01T00:00:30.000000Z'), ','))
               FROM generate_series(1, rows) i);
    t0 := clock_timestamp();
    EXECUTE statement;
    updated := updated + (clock_timestamp() - t0);
    t0 := clock_timestamp();
    INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, latency_ms, error, response_body)
    SELECT 'd' || (b * rows + i), 1, '2026-01-01T00:00:01.000000Z', 200, 3, NULL, ''
      FROM generate_series(1, rows) i
    ON CONFLICT DO NOTHING;
    attempts := attempts + (clock_timestamp() - t0);
  END LOOP;
  RAISE NOTICE 'microseconds a delivery: delivery row % , its update after the attempt % , attempt row % , total %',
    round(extract(epoch FROM inserted) * 1e6 / (batches * rows), 1),
    round(extract(epoch FROM updated) * 1e6 / (batches * rows), 1),
    round(extract(epoch FROM attempts) * 1e6 / (batches * rows), 1),
    round(extract(epoch FROM inserted + updated + attempts) * 1e6 / (batches * rows), 1);
END $$;
SQL
