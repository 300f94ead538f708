-- c2m-pulse migration 0005: feeds that let ClickHouse, not the worker's Python, expand the
-- per-id rows of a flush. The tables the views and restores read keep their shape.
--
-- visitor_feed: one row per (cell of a base window size, flush) with the visitor hashes
-- seen there. Base sizes are those not a multiple of a smaller configured size (by default
-- only the 5-minute windows). visitor_feed_expand turns each hash into the visitor_cells
-- row of every configured size that is a multiple of the row's size (the sizes are recorded
-- in pipeline_settings as 'window_seconds.<n>' by every worker at start). Rows written
-- before this migration stay valid: uniqExact over the rows of a cell is exact either way.
--
-- dedup_feed: one row per (source partition, hour bucket, flush) with the event-id hashes;
-- dedup_feed_expand writes one dedup_ids row per hash.

CREATE TABLE IF NOT EXISTS {db}.visitor_feed
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       String,
    color          String,
    size           String,
    price_band     LowCardinality(String),
    region         String,
    visitor_hashes Array(UInt64)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.visitor_feed_expand TO {db}.visitor_cells AS
WITH
    (
        SELECT groupArray(toUInt32(value))
        FROM
        (
            SELECT name, argMax(value, updated_at) AS value
            FROM {db}.pipeline_settings
            WHERE startsWith(name, 'window_seconds.')
            GROUP BY name
        )
    ) AS configured
SELECT
    w                                                                   AS window_seconds,
    toDateTime(intDiv(toUInt32(window_start), w) * w, 'UTC')            AS window_start,
    category, color, size, price_band, region, visitor_hash
FROM {db}.visitor_feed
ARRAY JOIN visitor_hashes AS visitor_hash
ARRAY JOIN arrayFilter(x -> x % window_seconds = 0,
                       arrayDistinct(arrayConcat([window_seconds], configured))) AS w;

CREATE TABLE IF NOT EXISTS {db}.dedup_feed
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    hour             UInt32,
    id_hashes        Array(UInt64),
    version          UInt64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dedup_feed_expand TO {db}.dedup_ids AS
SELECT source_topic, source_partition, hour, id_hash, version
FROM {db}.dedup_feed
ARRAY JOIN id_hashes AS id_hash;
