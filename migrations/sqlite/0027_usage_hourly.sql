-- Each tenant's activations and validations per hour, for the admin
-- panel's charts. Processes add their in-memory counts every few seconds
-- (app::usage); these are statistics, not the record, which is the log.
CREATE TABLE usage_hourly (
    tenant_id    text    NOT NULL,
    hour_start   bigint  NOT NULL,
    activations  bigint  NOT NULL DEFAULT 0,
    validations  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour_start)
);
