-- The share of a license's seats, in percent, whose crossing upwards sends
-- the usage threshold webhook (seed 003's "usage threshold alerts"); a
-- second alert is sent when the seats are all taken.
ALTER TABLE tenants ADD COLUMN usage_threshold_percent bigint NOT NULL DEFAULT 80;
