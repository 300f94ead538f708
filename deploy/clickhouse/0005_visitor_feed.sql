-- c2m-pulse migration 0005: visitor rows are written once per page view, not once per window
-- size. Workers insert into visitor_feed the (cell, visitor) rows of their base window sizes
-- (the sizes that are not a multiple of a smaller configured size: by default only the
-- 5-minute windows); this materialized view expands every row, inside ClickHouse, into the
-- visitor_cells row of each configured size that is a multiple of the row's size (the
-- sizes are recorded in pipeline_settings as 'window_seconds.<n>' by every worker at start).
-- visitor_cells keeps its shape and meaning, and rows written before this migration stay
-- valid: uniqExact over the rows of a cell is exact either way.

CREATE TABLE IF NOT EXISTS {db}.visitor_feed
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       String,
    color          String,
    size           String,
    price_band     LowCardinality(String),
    region         String,
    visitor_hash   UInt64
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
ARRAY JOIN arrayFilter(x -> x % window_seconds = 0,
                       arrayDistinct(arrayConcat([window_seconds], configured))) AS w;
