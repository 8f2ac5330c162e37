-- Per-tenant serial numbers (licenses, devices), for clients that parse
-- integer ids (seed 003). A process reserves a block of numbers at a time:
-- `next_number` is the highest number handed out to any process. Numbers
-- are unique within a tenant and kind; they rise within one process,
-- not across processes, and leave gaps where a process stopped early.
CREATE TABLE tenant_serials (
    tenant_id   text   NOT NULL,
    kind        text   NOT NULL,
    next_number bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
