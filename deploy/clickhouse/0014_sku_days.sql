-- c2m-pulse migration 0014: SKU days, the SKU hours of settled local days summed per SKU
-- and day (issue 17). {db} is the database identifier; {tz} the market time zone.
--
-- The production brief (14 days) and the forecast's daily demand (56 days) read whole
-- local days, but sku_hours keeps 24 rows per SKU and day: their cost grew with the days
-- they span (bench/RESULTS.md). A day whose every hour is before each partition's
-- watermark minus the correction horizon can no longer change (a later event is a late
-- event), so the alert leader's market refresher folds such days once into sku_days
-- (streams/clickhouse/sku_days.py), off the ingest path, and records in sku_days_folded
-- the day they are folded up to and the watermarks they were folded under. Readers take
-- the days before that bound from sku_days and the rest from sku_hours, and only while
-- the watermarks still hold (sku_days_cut): a partition reset (which also empties both
-- tables), a new partition, or a watermark that went back can rewrite settled hours, and
-- then readers use sku_hours alone until the next refresh folds again. Same numbers
-- either way: tests compare the brief with 0013's view through all of these.

CREATE TABLE IF NOT EXISTS {db}.sku_days
(
    day_start        DateTime('{tz}') COMMENT 'local midnight',
    sku              String,
    orders           UInt64,
    units            UInt64,
    cancelled_units  UInt64,
    returned_units   UInt64,
    pageviews        UInt64,
    version          UInt64 COMMENT 'sum of the versions of the day''s sku_hours rows read'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day_start)
ORDER BY (day_start, sku);

-- One row per fold (the newest counts): every local day before folded_before is in
-- sku_days, folded while each partition's watermark was at least its value in marks
-- ('topic/partition' -> epoch ms), under a correction horizon of horizon_ms. A fold that
-- starts again from scratch first writes a void row (no marks). A state row, not
-- history: no TTL (a fold missing reads sku_hours alone, which is always right).
CREATE TABLE IF NOT EXISTS {db}.sku_days_folded
(
    folded_before DateTime('{tz}'),
    marks         Map(String, Int64),
    horizon_ms    Int64,
    written_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(written_at)
ORDER BY tuple();

-- The bound readers use: folded_before while the fold's watermarks hold (the same
-- partitions have checkpoints, none with a lower watermark) and the workers' correction
-- horizon (pipeline_settings) is not longer than the fold's, else the epoch (sku_hours
-- alone). One row. With its definer's rights: a factory's user reads the bound (a day),
-- not the tables behind it.
CREATE OR REPLACE VIEW {db}.sku_days_cut DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
WITH
    (SELECT (argMax(folded_before, written_at), argMax(marks, written_at),
             argMax(horizon_ms, written_at), count())
     FROM {db}.sku_days_folded) AS f,
    (SELECT CAST((groupArray(concat(source_topic, '/', toString(source_partition))),
                  groupArray(watermark)), 'Map(String, Int64)')
     FROM {db}.checkpoints_latest FINAL) AS now,
    ifNull((SELECT argMax(value, updated_at) FROM {db}.pipeline_settings
            WHERE name = 'correction_horizon_ms'), 0) AS horizon
SELECT
    f.4 > 0 AND length(f.2) > 0 AND length(now) = length(f.2)
        AND arrayAll(k -> mapContains(now, k) AND now[k] >= f.2[k], mapKeys(f.2))
        AND f.3 >= horizon                                        AS valid,
    if(valid, f.1, toDateTime(0, '{tz}'))                         AS cut;

-- The production brief of 0013, its SKU days read from sku_days before the cut and from
-- sku_hours after it (same columns, same rows; but for its first day, which is now the
-- local midnight {days} - 1 dates back: 0013's was an hour off across a daylight-saving
-- change).
-- Query: SELECT * FROM c2m.production_brief(days=14, run_days=30, factory='')
CREATE OR REPLACE VIEW {db}.production_brief AS
WITH
    (SELECT hour_start FROM {db}.sku_hours
     WHERE hour_start <= toDateTime(intDiv(ifNull((SELECT max(max_ts)
                                                  FROM {db}.source_progress), 0), 1000))
     ORDER BY hour_start DESC LIMIT 1) AS newest_hour,
    -- the first local midnight of the range (0013 stepped back whole 24 h days from the
    -- last one, an hour off across a daylight-saving change)
    toStartOfDay(toDateTime(toDate(newest_hour - 1) - ({days:UInt32} - 1), '{tz}'))
        AS first_day,
    -- days before day_cut from sku_days, the hours from it on from sku_hours
    least((SELECT cut FROM {db}.sku_days_cut), toStartOfDay(newest_hour - 1)) AS day_cut,
    (SELECT max(as_of_day) FROM {db}.brief_forecast
     WHERE factory_id = {factory:String}) AS forecast_day,
    -- one scan of the SKU days: net units per cell and local day, then every brief row
    -- and every day's category total in one aggregation (a 'day' row per day_ago), the
    -- category's totals spread to its rows by window functions
    cell_days AS
    (
        SELECT
            p.category AS category, p.color AS color, p.size AS size,
            p.price_band AS price_band, s.day_ago AS day_ago, sum(s.net) AS net,
            sum(s.units) AS units, sum(s.orders) AS orders, sum(s.pageviews) AS pageviews,
            sum(s.returned) AS returned
        FROM
        (
            -- per SKU and local day first: the join below meets one row per SKU and day
            SELECT
                h.sku AS sku,
                dateDiff('day', toDate(h.hour_start), toDate(newest_hour - 1)) AS day_ago,
                sum(toInt64(h.units) - toInt64(h.cancelled_units) - toInt64(h.returned_units))
                    AS net,
                sum(h.units) AS units, sum(h.orders) AS orders, sum(h.pageviews) AS pageviews,
                sum(h.returned_units) AS returned
            FROM {db}.sku_hours AS h FINAL
            WHERE h.hour_start >= greatest(first_day, day_cut) AND h.hour_start < newest_hour
              AND ({factory:String} = '' OR h.sku IN (
                  SELECT sku FROM {db}.products_current WHERE factory_id = {factory:String}))
            GROUP BY sku, day_ago
            UNION ALL
            SELECT
                d.sku AS sku,
                dateDiff('day', toDate(d.day_start), toDate(newest_hour - 1)) AS day_ago,
                toInt64(d.units) - toInt64(d.cancelled_units) - toInt64(d.returned_units)
                    AS net,
                d.units AS units, d.orders AS orders, d.pageviews AS pageviews,
                d.returned_units AS returned
            FROM {db}.sku_days AS d FINAL
            WHERE d.day_start >= first_day AND d.day_start < day_cut
              AND ({factory:String} = '' OR d.sku IN (
                  SELECT sku FROM {db}.products_current WHERE factory_id = {factory:String}))
        ) AS s
        INNER JOIN {db}.products_current AS p ON s.sku = p.sku
        -- again here: a SKU whose factory changed between the two reads of the catalog
        WHERE {factory:String} = '' OR p.factory_id = {factory:String}
        GROUP BY category, color, size, price_band, day_ago
    ),
    rows AS
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
        FROM cell_days
        ARRAY JOIN [('total', ''), ('color', color), ('size', size), ('price_band', price_band),
                    ('day', toString(day_ago))] AS dv
        GROUP BY category, dimension, value
    ),
    by_value AS
    (
        SELECT
            *,
            countIf(dimension = 'day') OVER (PARTITION BY category)          AS span_days,
            sumIf(net_units, dimension = 'day') OVER (PARTITION BY category) AS cat_net,
            cat_net / span_days                                              AS daily_rate,
            if(span_days > 1,
               stddevSampIf(toFloat64(net_units), dimension = 'day')
                   OVER (PARTITION BY category), 0)                         AS daily_sd
        FROM rows
    ),
    lost AS
    (
        SELECT category, dv.1 AS dimension, dv.2 AS value, sum(lost_units) AS lost_units
        FROM {db}.lost_sales FINAL
        ARRAY JOIN [('total', ''), ('color', color), ('size', size), ('price_band', price_band)]
            AS dv
        WHERE hour_start >= first_day AND hour_start < newest_hour
          AND ({factory:String} = '' OR factory_id = {factory:String})
        GROUP BY category, dimension, value
    ),
    fc AS
    (
        SELECT category, dimension, value, cum_mean, cum_sd, model, growth, history_days,
               promo_days, as_of_day
        FROM {db}.brief_forecast FINAL
        WHERE factory_id = {factory:String} AND as_of_day = forecast_day
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
    toFloat64(greatest(v.cat_net, 1))                                 AS n,
    greatest(v.net_units, 0) / n                                      AS share,
    -- Wilson score interval (z = 1.96) with n = the category's net units
    (share + 1.9208 / n - 1.96 * sqrt(share * (1 - share) / n + 0.9604 / (n * n)))
        / (1 + 3.8416 / n)                                            AS share_low,
    (share + 1.9208 / n + 1.96 * sqrt(share * (1 - share) / n + 0.9604 / (n * n)))
        / (1 + 3.8416 / n)                                            AS share_high,
    v.daily_rate                                                      AS category_daily_rate,
    round(ifNull(l.lost_units, 0), 1)                                 AS lost_units,
    length(f.cum_mean) > 0                                            AS has_forecast,
    least({run_days:UInt32}, greatest(length(f.cum_mean), 1))         AS k,
    toFloat64(arrayElement(f.cum_mean, k))                            AS fc_mean,
    toFloat64(arrayElement(f.cum_sd, k))                              AS fc_sd,
    if(has_forecast, 'forecast', 'trailing mean')                     AS method,
    if(has_forecast, toUInt32(k), {run_days:UInt32})                  AS run_days,
    if(has_forecast, f.as_of_day + 1, NULL)                           AS forecast_from,
    if(has_forecast, f.model, '')                                     AS forecast_model,
    if(has_forecast, round(exp(f.growth * 7) - 1, 4), 0)                AS weekly_growth,
    if(has_forecast, arrayFilter(d -> d <= f.as_of_day + k, f.promo_days), [])
                                                                      AS promotion_days,
    toInt64(if(has_forecast, ceil(fc_mean),
               ceil(greatest(v.daily_rate, 0) * {run_days:UInt32} * share)))
                                                                      AS recommended_qty,
    v.span_days                                                       AS days_with_data,
    if(has_forecast, toInt64(ceil(greatest(fc_mean - 1.96 * fc_sd, 0))),
       if(v.span_days >= 7,
          toInt64(ceil(greatest(v.daily_rate - 1.96 * v.daily_sd / sqrt(v.span_days), 0)
                       * {run_days:UInt32} * share_low)), NULL))      AS qty_low,
    if(has_forecast, toInt64(ceil(fc_mean + 1.96 * fc_sd)),
       if(v.span_days >= 7,
          toInt64(ceil((v.daily_rate + 1.96 * v.daily_sd / sqrt(v.span_days))
                       * {run_days:UInt32} * share_high)), NULL))     AS qty_high,
    first_day                                                         AS from_day,
    '{tz}'                                                            AS tz
FROM by_value AS v
LEFT JOIN lost AS l ON v.category = l.category AND v.dimension = l.dimension
                       AND v.value = l.value
LEFT JOIN fc AS f ON v.category = f.category AND v.dimension = f.dimension
                     AND v.value = f.value
WHERE v.dimension != 'day'
ORDER BY category, dimension, net_units DESC, value;
