-- c2m-pulse migration 0001: demand state, checkpoints, late events, demand_by_attribute view.
-- {db} is replaced by the configured database name (an identifier, never event data).

CREATE TABLE IF NOT EXISTS {db}.demand_state
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    window_seconds   UInt32,
    window_start     DateTime('UTC'),
    category         String,
    color            String,
    size             String,
    price_band       LowCardinality(String),
    region           String,
    orders           UInt64,
    units            UInt64,
    gmv_e4           Int64 COMMENT 'GMV in 1/10000 CNY',
    cancelled_units  UInt64,
    returned_units   UInt64,
    pageviews        UInt64,
    version          UInt64 COMMENT 'source partition position (next offset) at the flush',
    written_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_seconds, window_start, category, color, size, price_band, region,
          source_topic, source_partition);

CREATE TABLE IF NOT EXISTS {db}.checkpoints
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    position         UInt64 COMMENT 'next offset to process = version of the rows of this flush',
    max_ts           Int64 COMMENT 'highest event ts applied (epoch ms), -1 if none',
    consumed         UInt64,
    processed        UInt64,
    dead_lettered    UInt64,
    duplicates       UInt64,
    late             UInt64,
    written_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, position);

CREATE TABLE IF NOT EXISTS {db}.late_events
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64,
    event_id         String,
    event_type       LowCardinality(String),
    ts               DateTime64(3, 'UTC'),
    watermark        DateTime64(3, 'UTC'),
    lateness_ms      Int64,
    payload          String COMMENT 'the original message, for reprocessing',
    recorded_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset);

-- Final numbers with a plain SELECT: the latest version of each (cell, source partition),
-- summed over source partitions. Exactly one row per (window_start, window_seconds, cell).
CREATE OR REPLACE VIEW {db}.demand_by_attribute AS
SELECT
    window_start,
    window_seconds,
    category,
    color,
    size,
    price_band,
    region,
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
GROUP BY window_start, window_seconds, category, color, size, price_band, region;
