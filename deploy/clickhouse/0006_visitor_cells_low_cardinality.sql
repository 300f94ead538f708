-- c2m-pulse migration 0006: the attribute columns of visitor_cells as LowCardinality.
--
-- visitor_cells holds about one row per page view and window size, sorted by the whole
-- cell key; its few distinct categories, colours, sizes and regions as dictionary codes
-- make the sort and the storage of every flush's expansion cheaper (about a quarter of
-- the expansion's CPU). visitor_feed keeps String columns (the worker's insert stays plain
-- strings; the materialized view converts). A type change of key columns that keeps every
-- value: existing parts are rewritten by a mutation, readers see the same values.

ALTER TABLE {db}.visitor_cells
    MODIFY COLUMN category LowCardinality(String),
    MODIFY COLUMN color    LowCardinality(String),
    MODIFY COLUMN size     LowCardinality(String),
    MODIFY COLUMN region   LowCardinality(String);
