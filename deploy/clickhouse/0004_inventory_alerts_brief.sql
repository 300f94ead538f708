-- c2m-pulse migration 0004: per-SKU hourly counters, the catalog, alerts, production brief.
-- {db} is the configured database identifier.

-- Absolute per-partition counters per (sku, hour), versioned like demand_state.
CREATE TABLE IF NOT EXISTS {db}.sku_state
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    sku              String,
    hour_start       DateTime('UTC'),
    orders           UInt64 COMMENT 'orders containing the SKU',
    units            UInt64 COMMENT 'units ordered',
    cancelled_units  UInt64,
    returned_units   UInt64,
    pageviews        UInt64,
    restock_shipped  UInt64,
    restock_received UInt64,
    count_ts         Int64 COMMENT 'ts (epoch ms) of the latest stock count in the hour, -1 if none',
    count_on_hand    Int64,
    version          UInt64 COMMENT 'source partition position (next offset) at the flush',
    written_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour_start)
ORDER BY (sku, hour_start, source_topic, source_partition);

-- Every catalog version (from shop.products), by event time.
CREATE TABLE IF NOT EXISTS {db}.products
(
    sku            String,
    ts             Int64 COMMENT 'valid from (epoch ms)',
    factory_id     String,
    category       String,
    color          String,
    size           String,
    price_band     LowCardinality(String),
    list_price     Float64,
    lead_time_days UInt16,
    moq            UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (sku, ts);

-- The latest catalog version of each SKU.
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
GROUP BY sku;

-- Per (sku, hour): the latest version per source partition, summed over partitions; the
-- stock count is the latest one of the hour over all partitions.
CREATE OR REPLACE VIEW {db}.sku_hourly AS
SELECT
    sku,
    hour_start,
    sum(p_orders)                                          AS orders,
    sum(p_units)                                           AS units,
    sum(p_cancelled)                                       AS cancelled_units,
    sum(p_returned)                                        AS returned_units,
    sum(p_pageviews)                                       AS pageviews,
    sum(p_shipped)                                         AS restock_shipped,
    sum(p_received)                                        AS restock_received,
    max(p_count_ts)                                        AS count_ts,
    argMax(p_count_on_hand, (p_count_ts, p_count_on_hand)) AS count_on_hand
FROM
(
    SELECT
        sku, hour_start, source_topic, source_partition,
        argMax(orders, version)           AS p_orders,
        argMax(units, version)            AS p_units,
        argMax(cancelled_units, version)  AS p_cancelled,
        argMax(returned_units, version)   AS p_returned,
        argMax(pageviews, version)        AS p_pageviews,
        argMax(restock_shipped, version)  AS p_shipped,
        argMax(restock_received, version) AS p_received,
        argMax(count_ts, version)         AS p_count_ts,
        argMax(count_on_hand, version)    AS p_count_on_hand
    FROM {db}.sku_state
    GROUP BY sku, hour_start, source_topic, source_partition
)
GROUP BY sku, hour_start;

-- Alerts: every state change (open, updated, resolved) of every alert, keyed by
-- (alert_id, version) so that writing a change twice changes nothing.
CREATE TABLE IF NOT EXISTS {db}.alert_history
(
    alert_id           String,
    version            UInt32,
    kind               LowCardinality(String) COMMENT 'restock | surge | rising_share',
    state              LowCardinality(String) COMMENT 'open | updated | resolved',
    severity           LowCardinality(String) COMMENT 'critical | warning | info',
    factory_id         String COMMENT 'restock alerts: the factory that makes the SKU',
    factories          Array(String) COMMENT 'factories making the SKU or category',
    category           String,
    sku                String,
    dimension          LowCardinality(String) COMMENT 'demand signals: color | size | price_band',
    value              String,
    window_start       DateTime('UTC') COMMENT 'the hour whose evaluation made this change',
    opened_at          DateTime('UTC'),
    changed_at         DateTime('UTC') COMMENT 'end of that hour (event time)',
    observed           Float64 COMMENT 'restock: on hand + in transit, surge: units in the hour',
    expected           Float64 COMMENT 'restock: reorder point, surge: baseline units',
    score              Float64 COMMENT 'restock: days of cover, surge: observed/baseline',
    recommended_qty    Int64,
    projected_stockout Nullable(DateTime('UTC')),
    details            String COMMENT 'the rule numbers (JSON)',
    message            String COMMENT 'the published message (JSON, schemas/json)',
    recorded_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_id, version);

-- One current row per alert_id: the newest version wins (query with FINAL, or use
-- alerts_current).
CREATE TABLE IF NOT EXISTS {db}.alerts AS {db}.alert_history
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id;

CREATE OR REPLACE VIEW {db}.alerts_current AS
SELECT * FROM {db}.alerts FINAL;

-- Event-time hours the alert evaluator has finished (published and stored).
CREATE TABLE IF NOT EXISTS {db}.alert_progress
(
    hour_start  DateTime('UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY hour_start;

-- Production brief for the next run, as of the newest event time, over the last {days}
-- days (or fewer, when there is less history: days_with_data): mix by colour, size and price band (share of net units with a 95% Wilson
-- interval), conversion and return rate, and quantities for a run covering {run_days}
-- days of demand (95% interval from the day-to-day spread). {factory} = '' for all
-- factories. Query: SELECT * FROM c2m.production_brief(days=14, run_days=30, factory='')
CREATE OR REPLACE VIEW {db}.production_brief AS
WITH
    (SELECT intDiv(max(max_ts), 3600000) * 3600 FROM {db}.source_progress) AS as_of_s,
    base AS
    (
        SELECT
            p.category AS category, p.color AS color, p.size AS size,
            p.price_band AS price_band,
            intDiv(as_of_s - toInt64(toUnixTimestamp(h.hour_start)) - 1, 86400) AS day_ago,
            toInt64(h.units) - toInt64(h.cancelled_units) - toInt64(h.returned_units) AS net,
            h.units AS units, h.orders AS orders, h.pageviews AS pageviews,
            h.returned_units AS returned
        FROM {db}.sku_hourly AS h
        INNER JOIN {db}.products_current AS p ON h.sku = p.sku
        WHERE toInt64(toUnixTimestamp(h.hour_start)) >= as_of_s - {days:UInt32} * 86400
          AND toInt64(toUnixTimestamp(h.hour_start)) < as_of_s
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
    toDateTime(as_of_s, 'UTC')                                        AS as_of,
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
                 * {run_days:UInt32} * share_high))                   AS qty_high
FROM by_value AS v
INNER JOIN totals AS t ON v.category = t.category
ORDER BY category, dimension, net_units DESC, value;
