-- c2m-pulse migration 0015: the flush feeds' windows as one integer each (issue 17: ingest).
-- {db} is the database identifier.
--
-- visitor_feed and shop_feed carry, with each base cell, the windows its visitors and
-- contributors count in. As Array(Tuple(UInt32, DateTime)) that column cost the worker
-- most of a feed insert: clickhouse-connect builds tuple columns row by row in Python,
-- holding the interpreter lock the engine's thread needs (43,448 shop rows: 189 ms to
-- serialize, 34 ms with the windows packed and the key in LowCardinality columns;
-- bench/RESULTS.md, 2026-12-06). A window is now size << 32 | start (seconds, UTC; both
-- fit 32 bits until 2106), and the views unpack it. Both feeds are Null tables: they hold
-- no rows, so dropping and creating them again loses nothing (migrations run before any
-- worker writes). visitor_cells and shop_cells are unchanged.

DROP VIEW IF EXISTS {db}.visitor_feed_expand;

DROP TABLE IF EXISTS {db}.visitor_feed;

CREATE TABLE IF NOT EXISTS {db}.visitor_feed
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       LowCardinality(String),
    color          LowCardinality(String),
    size           LowCardinality(String),
    price_band     LowCardinality(String),
    region         LowCardinality(String),
    visitor_hashes Array(UInt64),
    windows        Array(UInt64) COMMENT 'size << 32 | start of every window the row counts in'
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.visitor_feed_expand TO {db}.visitor_cells AS
SELECT toUInt32(bitShiftRight(w, 32)) AS window_seconds,
       toDateTime(toUInt32(bitAnd(w, 4294967295)), 'UTC') AS window_start,
       category, color, size, price_band, region, visitor_hash
FROM {db}.visitor_feed
ARRAY JOIN visitor_hashes AS visitor_hash
ARRAY JOIN windows AS w;

DROP VIEW IF EXISTS {db}.shop_feed_expand;

DROP TABLE IF EXISTS {db}.shop_feed;

CREATE TABLE IF NOT EXISTS {db}.shop_feed
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       LowCardinality(String),
    color          LowCardinality(String),
    size           LowCardinality(String),
    price_band     LowCardinality(String),
    region         LowCardinality(String),
    shop_tags      Array(UInt64),
    windows        Array(UInt64) COMMENT 'size << 32 | start of every window the row counts in'
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.shop_feed_expand TO {db}.shop_cells AS
SELECT toUInt32(bitShiftRight(w, 32)) AS window_seconds,
       toDateTime(toUInt32(bitAnd(w, 4294967295)), 'UTC') AS window_start,
       category, color, size, price_band, region, shop_tag
FROM {db}.shop_feed
ARRAY JOIN shop_tags AS shop_tag
ARRAY JOIN windows AS w;
