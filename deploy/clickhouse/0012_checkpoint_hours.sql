-- c2m-pulse migration 0012: each checkpoint row says which hours its publish refreshed
-- (issue 17; {db} is the database identifier).
--
-- A publish refreshes the serving rows of the cells and SKU hours it wrote, then writes
-- one checkpoint row per partition it advanced: those rows now carry the hours whose
-- alert inputs (sku_hours, hourly demand_cells) the refresh may have changed. A reader
-- that remembers the checkpoint positions it last saw reads, from the rows after them,
-- exactly which hours changed since (streams.core.alerting.inputs.InputCache): the alert
-- service reads those hours again instead of the whole correction horizon. A row without
-- hours_known (written before this migration, or by a process still on older code during
-- an upgrade) says nothing about what changed: a reader that meets one loads everything.

ALTER TABLE {db}.checkpoints
    ADD COLUMN IF NOT EXISTS hours Array(DateTime('UTC')) DEFAULT []
    COMMENT 'hours (sku_hours, hourly demand_cells) refreshed by the publish of this row';

ALTER TABLE {db}.checkpoints
    ADD COLUMN IF NOT EXISTS hours_known UInt8 DEFAULT 0
    COMMENT '1: hours lists what the publish refreshed (0: written by code before 0012)';
