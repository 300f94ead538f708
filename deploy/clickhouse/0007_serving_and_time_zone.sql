-- c2m-pulse migration 0007: the serving layer (final numbers kept at write time, read by
-- time range) and the market's time zone. {db} is the database identifier; {tz} the
-- market time zone (C2M_TIMEZONE), recorded in {db}.database_info before migrations run
-- (a database never changes zone: streams/clickhouse/migrations.py refuses it).
--
-- After these statements, streams/clickhouse/migrations.py (upgrade_0007) re-sorts
-- sku_state by hour and fills demand_cells and sku_hours from an existing database.

-- The dimension columns as dictionary codes: smaller, and cheaper to read and refresh.
ALTER TABLE {db}.demand_state
    MODIFY COLUMN category LowCardinality(String),
    MODIFY COLUMN color    LowCardinality(String),
    MODIFY COLUMN size     LowCardinality(String),
    MODIFY COLUMN region   LowCardinality(String);

-- Final numbers per (window, cell): what every reader reads (streams/clickhouse/serving.py
-- keeps it up to date with each flush). version = sum over source partitions of the newest
-- version read, so the latest refresh wins; read with FINAL or demand_by_attribute.
CREATE TABLE IF NOT EXISTS {db}.demand_cells
(
    window_seconds  UInt32,
    window_start    DateTime('{tz}'),
    window_end      DateTime('{tz}') COMMENT 'a local day may last 23 or 25 hours',
    category        LowCardinality(String),
    color           LowCardinality(String),
    size            LowCardinality(String),
    price_band      LowCardinality(String),
    region          LowCardinality(String),
    orders          UInt64,
    units           UInt64,
    gmv_e4          Int64 COMMENT 'GMV in 1/10000 CNY',
    cancelled_units UInt64,
    returned_units  UInt64,
    pageviews       UInt64,
    unique_visitors UInt64,
    version         UInt64 COMMENT 'sum over source partitions of their newest version read'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_seconds, window_start, category, color, size, price_band, region);

-- Final SKU counters per (hour, SKU), for the alert rules and the production brief.
CREATE TABLE IF NOT EXISTS {db}.sku_hours
(
    hour_start       DateTime('{tz}'),
    sku              String,
    orders           UInt64,
    units            UInt64,
    cancelled_units  UInt64,
    returned_units   UInt64,
    pageviews        UInt64,
    restock_shipped  UInt64,
    restock_received UInt64,
    count_ts         Int64 COMMENT 'ts (epoch ms) of the latest stock count in the hour, -1 if none',
    count_on_hand    Int64,
    version          UInt64 COMMENT 'sum over source partitions of their newest version read'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour_start)
ORDER BY (hour_start, sku);

-- The record a checkpoint ends on (its Kafka timestamp and a fingerprint of its key and
-- value): a restore checks it is still there, so a checkpoint of another log (a topic
-- deleted and recreated, a reset broker, another cluster) is never applied to this one.
ALTER TABLE {db}.checkpoints
    ADD COLUMN IF NOT EXISTS last_ts Int64 DEFAULT -1 COMMENT 'Kafka timestamp of the record at position - 1',
    ADD COLUMN IF NOT EXISTS last_fp UInt64 DEFAULT 0 COMMENT 'CRC-32 of its key << 32 | CRC-32 of its value';

-- The latest checkpoint of every source partition, kept by a materialized view: every
-- view and the alert watermark read this instead of grouping all checkpoints.
CREATE TABLE IF NOT EXISTS {db}.checkpoints_latest
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    position         UInt64,
    max_ts           Int64,
    consumed         UInt64,
    processed        UInt64,
    dead_lettered    UInt64,
    duplicates       UInt64,
    late             UInt64,
    watermark        Int64,
    written_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(position)
ORDER BY (source_topic, source_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.checkpoints_latest_feed TO {db}.checkpoints_latest AS
SELECT source_topic, source_partition, position, max_ts, consumed, processed, dead_lettered,
       duplicates, late, watermark, written_at
FROM {db}.checkpoints;

INSERT INTO {db}.checkpoints_latest
SELECT source_topic, source_partition, max(position), argMax(max_ts, position),
       argMax(consumed, position), argMax(processed, position),
       argMax(dead_lettered, position), argMax(duplicates, position), argMax(late, position),
       argMax(watermark, position), argMax(written_at, position)
FROM {db}.checkpoints
GROUP BY source_topic, source_partition;

-- Visitor rows: the worker now sends, with each base-window row, the windows of every size
-- its visitors count in (the engine's calendar knows local days; SQL does not re-derive them).
ALTER TABLE {db}.visitor_feed ADD COLUMN IF NOT EXISTS windows Array(Tuple(UInt32, DateTime('UTC')));

DROP VIEW IF EXISTS {db}.visitor_feed_expand;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.visitor_feed_expand TO {db}.visitor_cells AS
SELECT w.1 AS window_seconds, w.2 AS window_start, category, color, size, price_band, region,
       visitor_hash
FROM {db}.visitor_feed
ARRAY JOIN visitor_hashes AS visitor_hash
ARRAY JOIN windows AS w;

-- Demand hidden by stockouts (issue 20): per SKU and hour out of stock, the units, orders
-- and GMV it is estimated to have lost (page views x in-stock conversion; written by the
-- alert service with each evaluated hour; see docs/ALERTS.md).
CREATE TABLE IF NOT EXISTS {db}.lost_sales
(
    hour_start  DateTime('{tz}'),
    sku         String,
    factory_id  String,
    category    LowCardinality(String),
    color       LowCardinality(String),
    size        LowCardinality(String),
    price_band  LowCardinality(String),
    lost_units  Float64,
    lost_orders Float64,
    lost_gmv    Float64,
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(recorded_at)
PARTITION BY toYYYYMM(hour_start)
ORDER BY (hour_start, sku);

-- A tombstone on the compacted catalog topic deletes a product (a row with deleted = 1 at
-- the tombstone's record time); the latest row of a SKU decides.
ALTER TABLE {db}.products ADD COLUMN IF NOT EXISTS deleted UInt8 DEFAULT 0;

CREATE OR REPLACE VIEW {db}.products_current AS
SELECT
    sku,
    argMax(factory_id, ts)     AS factory_id,
    argMax(category, ts)       AS category,
    argMax(color, ts)          AS color,
    argMax(size, ts)           AS size,
    argMax(price_band, ts)     AS price_band,
    argMax(list_price, ts)     AS list_price,
    argMax(lead_time_days, ts) AS lead_time_days,
    argMax(moq, ts)            AS moq
FROM {db}.products
GROUP BY sku
HAVING argMax(deleted, ts) = 0;

CREATE OR REPLACE VIEW {db}.source_progress AS
SELECT source_topic, source_partition, position AS last_position, max_ts, watermark, consumed,
       processed, dead_lettered, duplicates, late, written_at
FROM {db}.checkpoints_latest FINAL;

-- Final numbers with a plain SELECT: one row per (window_start, window_seconds, cell).
-- window_start and window_end are in the market's zone ('{tz}', also the tz column): a
-- daily row starts at local midnight, so WHERE window_start = '2026-11-11' is 双11.
CREATE OR REPLACE VIEW {db}.demand_by_attribute AS
SELECT
    window_start, window_seconds, category, color, size, price_band, region,
    orders, units, gmv_e4 / 10000 AS gmv, cancelled_units, returned_units,
    toInt64(units) - toInt64(cancelled_units) - toInt64(returned_units) AS net_units,
    pageviews, unique_visitors,
    if(pageviews = 0, 0, orders / pageviews) AS conversion_rate,
    toUInt8(toInt64(toUnixTimestamp(window_end)) * 1000
            <= ifNull((SELECT watermark_ms FROM {db}.event_time_progress), -1)) AS is_final,
    window_end,
    '{tz}' AS tz
FROM {db}.demand_cells FINAL;

-- Rolling demand as of the newest event time (not the wall clock): the last 1 h of
-- 5-minute windows and the last 24 h and 7 d of hourly windows, ending with the window that
-- holds the newest event (as_of = its end). Each part reads only its range. Needs the
-- window sizes 300, 3600 and 86400 (settings validation keeps them).
CREATE OR REPLACE VIEW {db}.demand_rolling AS
WITH
    toDateTime(intDiv(ifNull((SELECT newest_ts FROM {db}.event_time_progress), 0), 1000))
        AS newest,
    (SELECT window_end FROM {db}.demand_cells
     WHERE window_seconds = 300 AND window_start <= newest
     ORDER BY window_seconds DESC, window_start DESC LIMIT 1) AS as_of_5m,
    (SELECT window_end FROM {db}.demand_cells
     WHERE window_seconds = 3600 AND window_start <= newest
     ORDER BY window_seconds DESC, window_start DESC LIMIT 1) AS as_of_1h,
    -- 7 d: the local days wholly inside it from daily windows, the hours at its two ends
    -- from hourly ones (the same sums, a third of the rows)
    as_of_1h - INTERVAL 168 HOUR AS lo_7d,
    if(toStartOfDay(lo_7d) = lo_7d, lo_7d, toStartOfDay(lo_7d) + INTERVAL 1 DAY) AS day_0,
    toStartOfDay(as_of_1h) AS day_1
SELECT
    horizon, as_of, category, color, size, price_band, region,
    sum(o)                                           AS orders,
    sum(u)                                           AS units,
    sum(g) / 10000                                   AS gmv,
    sum(cu)                                          AS cancelled_units,
    sum(ru)                                          AS returned_units,
    toInt64(sum(u)) - toInt64(sum(cu)) - toInt64(sum(ru)) AS net_units,
    sum(pv)                                          AS pageviews,
    if(sum(pv) = 0, 0, sum(o) / sum(pv))             AS conversion_rate
FROM
(
    SELECT '1h' AS horizon, as_of_5m AS as_of, category, color, size, price_band, region,
           orders AS o, units AS u, gmv_e4 AS g, cancelled_units AS cu, returned_units AS ru,
           pageviews AS pv
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 300 AND window_start >= as_of_5m - INTERVAL 1 HOUR
      AND window_start < as_of_5m
    UNION ALL
    SELECT '24h', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 3600 AND window_start >= as_of_1h - INTERVAL 24 HOUR
      AND window_start < as_of_1h
    UNION ALL
    SELECT '7d', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 86400 AND window_start >= day_0 AND window_start < day_1
    UNION ALL
    SELECT '7d', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 3600 AND ((window_start >= lo_7d AND window_start < day_0)
                                     OR (window_start >= day_1 AND window_start < as_of_1h))
)
GROUP BY horizon, as_of, category, color, size, price_band, region;

-- Per (sku, hour): final counters (the stock count is the latest of the hour over all
-- partitions). Hours are the market's hourly windows, in its zone.
CREATE OR REPLACE VIEW {db}.sku_hourly AS
SELECT sku, hour_start, orders, units, cancelled_units, returned_units, pageviews,
       restock_shipped, restock_received, count_ts, count_on_hand
FROM {db}.sku_hours FINAL;

-- Production brief for the next run over the last {days} local days (today so far
-- included; days_with_data: the days that had any), as of the newest complete hour: mix
-- by colour, size and price band (share of net units with a 95% Wilson interval),
-- conversion and return rate, and quantities for a run covering {run_days} days of demand
-- (95% interval from the day-to-day spread). {factory} = '' for all factories.
-- Query: SELECT * FROM c2m.production_brief(days=14, run_days=30, factory='')
CREATE OR REPLACE VIEW {db}.production_brief AS
WITH
    (SELECT hour_start FROM {db}.sku_hours
     WHERE hour_start <= toDateTime(intDiv(ifNull((SELECT max(max_ts)
                                                  FROM {db}.source_progress), 0), 1000))
     ORDER BY hour_start DESC LIMIT 1) AS newest_hour,
    toStartOfDay(newest_hour - 1) - toIntervalDay({days:UInt32} - 1) AS first_day,
    base AS
    (
        SELECT
            p.category AS category, p.color AS color, p.size AS size,
            p.price_band AS price_band,
            dateDiff('day', toDate(h.hour_start), toDate(newest_hour - 1)) AS day_ago,
            toInt64(h.units) - toInt64(h.cancelled_units) - toInt64(h.returned_units) AS net,
            h.units AS units, h.orders AS orders, h.pageviews AS pageviews,
            h.returned_units AS returned
        FROM {db}.sku_hours AS h FINAL
        INNER JOIN {db}.products_current AS p ON h.sku = p.sku
        WHERE h.hour_start >= first_day AND h.hour_start < newest_hour
          AND ({factory:String} = '' OR p.factory_id = {factory:String})
    ),
    totals AS
    (
        SELECT
            category,
            count()                                             AS span_days,
            sum(net_day)                                        AS cat_net,
            sum(net_day) / span_days                            AS daily_rate,
            if(span_days > 1, stddevSamp(net_day), 0)           AS daily_sd
        FROM
        (
            SELECT category, day_ago, sum(net) AS net_day FROM base GROUP BY category, day_ago
        )
        GROUP BY category
    ),
    by_value AS
    (
        SELECT
            category,
            dv.1                       AS dimension,
            dv.2                       AS value,
            sum(net)                   AS net_units,
            sum(units)                 AS units,
            sum(orders)                AS orders,
            sum(pageviews)             AS pageviews,
            sum(returned)              AS returned_units
        FROM base
        ARRAY JOIN [('total', ''), ('color', color), ('size', size), ('price_band', price_band)]
            AS dv
        GROUP BY category, dimension, value
    )
SELECT
    newest_hour                                                       AS as_of,
    {days:UInt32}                                                     AS days,
    v.category                                                        AS category,
    v.dimension                                                       AS dimension,
    v.value                                                           AS value,
    v.net_units                                                       AS net_units,
    v.orders                                                          AS orders,
    v.pageviews                                                       AS pageviews,
    if(v.pageviews = 0, 0, v.orders / v.pageviews)                    AS conversion_rate,
    if(v.units = 0, 0, v.returned_units / v.units)                    AS return_rate,
    toFloat64(greatest(t.cat_net, 1))                                 AS n,
    greatest(v.net_units, 0) / n                                      AS share,
    -- Wilson score interval (z = 1.96) with n = the category's net units
    (share + 1.9208 / n - 1.96 * sqrt(share * (1 - share) / n + 0.9604 / (n * n)))
        / (1 + 3.8416 / n)                                            AS share_low,
    (share + 1.9208 / n + 1.96 * sqrt(share * (1 - share) / n + 0.9604 / (n * n)))
        / (1 + 3.8416 / n)                                            AS share_high,
    t.daily_rate                                                      AS category_daily_rate,
    toInt64(ceil(greatest(t.daily_rate, 0) * {run_days:UInt32} * share)) AS recommended_qty,
    t.span_days                                                       AS days_with_data,
    toInt64(ceil(greatest(t.daily_rate - 1.96 * t.daily_sd / sqrt(t.span_days), 0)
                 * {run_days:UInt32} * share_low))                    AS qty_low,
    toInt64(ceil(greatest(t.daily_rate + 1.96 * t.daily_sd / sqrt(t.span_days), 0)
                 * {run_days:UInt32} * share_high))                   AS qty_high,
    first_day                                                         AS from_day,
    '{tz}'                                                            AS tz
FROM by_value AS v
INNER JOIN totals AS t ON v.category = t.category
ORDER BY category, dimension, net_units DESC, value;
