-- c2m-pulse migration 0003: unique visitors, event-time progress and window finality,
-- rolling demand. {db} is the configured database identifier.

-- One row per (window, cell, visitor). Rows are written once per flush in which a visitor
-- is first seen in a cell by a partition; writing a row twice changes nothing, and
-- uniqExact over the rows is exact across partitions (up to 64-bit hash collisions).
CREATE TABLE IF NOT EXISTS {db}.visitor_cells
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       String,
    color          String,
    size           String,
    price_band     LowCardinality(String),
    region         String,
    visitor_hash   UInt64 COMMENT '64-bit BLAKE2b of visitor_id'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_seconds, window_start, category, color, size, price_band, region, visitor_hash);

-- The event-time watermark of each source partition at each checkpoint.
ALTER TABLE {db}.checkpoints ADD COLUMN IF NOT EXISTS watermark Int64 DEFAULT -1
    COMMENT 'max_ts - allowed lateness (epoch ms), -1 if none';

-- Settings the views need, written by every worker at start.
CREATE TABLE IF NOT EXISTS {db}.pipeline_settings
(
    name       String,
    value      Int64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY name;

-- Latest checkpoint of every source partition.
CREATE OR REPLACE VIEW {db}.source_progress AS
SELECT
    source_topic,
    source_partition,
    max(position)                 AS last_position,
    argMax(max_ts, position)      AS max_ts,
    argMax(watermark, position)   AS watermark,
    argMax(consumed, position)      AS consumed,
    argMax(processed, position)     AS processed,
    argMax(dead_lettered, position) AS dead_lettered,
    argMax(duplicates, position)    AS duplicates,
    argMax(late, position)          AS late
FROM {db}.checkpoints
GROUP BY source_topic, source_partition;

-- Global event-time watermark: the minimum over source partitions that are not idle.
-- A partition is idle when its newest event is more than idle_partition_ms (event time)
-- behind the newest event of any partition; a partition that never had an event has no
-- checkpoint and is idle too. Idle partitions do not hold windows open.
CREATE OR REPLACE VIEW {db}.event_time_progress AS
SELECT
    any(n.newest_ts)                                             AS newest_ts,
    minIf(p.watermark, p.max_ts >= n.newest_ts - n.idle_ms AND p.watermark >= 0) AS watermark_ms,
    countIf(p.max_ts >= n.newest_ts - n.idle_ms)                 AS active_partitions,
    countIf(p.max_ts < n.newest_ts - n.idle_ms)                  AS idle_partitions
FROM {db}.source_progress AS p
CROSS JOIN
(
    SELECT
        (SELECT max(max_ts) FROM {db}.source_progress) AS newest_ts,
        ifNull((SELECT argMax(value, updated_at) FROM {db}.pipeline_settings
                WHERE name = 'idle_partition_ms'), 900000) AS idle_ms
) AS n;

CREATE OR REPLACE VIEW {db}.demand_by_attribute AS
SELECT
    d.window_start                                                     AS window_start,
    d.window_seconds                                                   AS window_seconds,
    d.category                                                         AS category,
    d.color                                                            AS color,
    d.size                                                             AS size,
    d.price_band                                                       AS price_band,
    d.region                                                           AS region,
    d.orders                                                           AS orders,
    d.units                                                            AS units,
    d.gmv                                                              AS gmv,
    d.cancelled_units                                                  AS cancelled_units,
    d.returned_units                                                   AS returned_units,
    d.net_units                                                        AS net_units,
    d.pageviews                                                        AS pageviews,
    v.unique_visitors                                                  AS unique_visitors,
    d.conversion_rate                                                  AS conversion_rate,
    toUInt8(toInt64(toUnixTimestamp(d.window_start)) + d.window_seconds
            <= intDiv(pr.watermark_ms, 1000))                          AS is_final
FROM
(
    SELECT
        window_start, window_seconds, category, color, size, price_band, region,
        sum(p_orders)                                   AS orders,
        sum(p_units)                                    AS units,
        sum(p_gmv_e4) / 10000                           AS gmv,
        sum(p_cancelled)                                AS cancelled_units,
        sum(p_returned)                                 AS returned_units,
        toInt64(sum(p_units)) - toInt64(sum(p_cancelled)) - toInt64(sum(p_returned)) AS net_units,
        sum(p_pageviews)                                AS pageviews,
        if(sum(p_pageviews) = 0, 0, sum(p_orders) / sum(p_pageviews)) AS conversion_rate
    FROM
    (
        SELECT
            window_start, window_seconds, category, color, size, price_band, region,
            source_topic, source_partition,
            argMax(orders, version)          AS p_orders,
            argMax(units, version)           AS p_units,
            argMax(gmv_e4, version)          AS p_gmv_e4,
            argMax(cancelled_units, version) AS p_cancelled,
            argMax(returned_units, version)  AS p_returned,
            argMax(pageviews, version)       AS p_pageviews
        FROM {db}.demand_state
        GROUP BY window_start, window_seconds, category, color, size, price_band, region,
                 source_topic, source_partition
    )
    GROUP BY window_start, window_seconds, category, color, size, price_band, region
) AS d
LEFT JOIN
(
    SELECT window_start, window_seconds, category, color, size, price_band, region,
           uniqExact(visitor_hash) AS unique_visitors
    FROM {db}.visitor_cells
    GROUP BY window_start, window_seconds, category, color, size, price_band, region
) AS v
    ON  d.window_start = v.window_start AND d.window_seconds = v.window_seconds
    AND d.category = v.category AND d.color = v.color AND d.size = v.size
    AND d.price_band = v.price_band AND d.region = v.region
CROSS JOIN {db}.event_time_progress AS pr
SETTINGS join_use_nulls = 0;

-- Rolling demand as of the newest event time (not the wall clock, so a replay of last
-- month shows last month): last 1 h from 5-minute windows, last 24 h and 7 d from 1-hour
-- windows. Unique visitors are not additive over windows and are not included here.
CREATE OR REPLACE VIEW {db}.demand_rolling AS
SELECT
    r.horizon                                       AS horizon,
    r.as_of                                         AS as_of,
    d.category                                      AS category,
    d.color                                         AS color,
    d.size                                          AS size,
    d.price_band                                    AS price_band,
    d.region                                        AS region,
    sum(d.orders)                                   AS orders,
    sum(d.units)                                    AS units,
    sum(d.gmv)                                      AS gmv,
    sum(d.cancelled_units)                          AS cancelled_units,
    sum(d.returned_units)                           AS returned_units,
    sum(d.net_units)                                AS net_units,
    sum(d.pageviews)                                AS pageviews,
    if(sum(d.pageviews) = 0, 0, sum(d.orders) / sum(d.pageviews)) AS conversion_rate
FROM {db}.demand_by_attribute AS d
INNER JOIN
(
    SELECT
        arrayJoin([('1h', 300, 3600), ('24h', 3600, 86400), ('7d', 3600, 604800)]) AS spec,
        spec.1 AS horizon,
        toUInt32(spec.2) AS window_seconds,
        spec.3 AS span_s,
        toDateTime(intDiv(intDiv(newest_ts, 1000), spec.2) * spec.2 + spec.2, 'UTC') AS as_of
    FROM {db}.event_time_progress
    WHERE newest_ts IS NOT NULL AND newest_ts >= 0
) AS r ON d.window_seconds = r.window_seconds
WHERE d.window_start >= r.as_of - r.span_s AND d.window_start < r.as_of
GROUP BY r.horizon, r.as_of, d.category, d.color, d.size, d.price_band, d.region;
