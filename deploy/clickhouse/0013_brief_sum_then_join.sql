-- c2m-pulse migration 0013: the production brief sums SKU hours per SKU and day before
-- the catalog join (issue 17). {db} is the database identifier; {tz} the market time zone.
--
-- The same view as 0009 (same columns, same numbers: a test compares them): the SKU hours
-- of the last {days} days are summed per SKU and local day first, and only those rows
-- (one per SKU and day, 24x fewer) are joined to products_current; 0009 joined every SKU
-- hour. The market's brief is a quarter faster at 30 days held; a factory's, and any
-- brief at 1 day held, about the same (bench/RESULTS.md). A factory's brief selects its
-- SKUs before the sums, and again after the join (products_current holds one row per
-- SKU; the second filter keeps a SKU that moved between the two reads out).

-- Production brief for the next run, as of the newest complete hour: the mix over the
-- last {days} local days (today so far included; days_with_data: the days that had any)
-- by colour, size and price band (share of net units with a 95% Wilson interval),
-- conversion, return rate and the units lost to stockouts in those days; and the
-- quantity for a run covering {run_days} days from the forecast (brief_forecast:
-- trend, weekly pattern, promotion days; 95% interval), capped at its 90 days. Before the
-- first forecast (a new database, less than a complete day) the quantity is the former
-- trailing mean (method = 'trailing mean') and its interval only from 7 days with data.
-- {factory} = '' for all factories.
-- Query: SELECT * FROM c2m.production_brief(days=14, run_days=30, factory='')
CREATE OR REPLACE VIEW {db}.production_brief AS
WITH
    (SELECT hour_start FROM {db}.sku_hours
     WHERE hour_start <= toDateTime(intDiv(ifNull((SELECT max(max_ts)
                                                  FROM {db}.source_progress), 0), 1000))
     ORDER BY hour_start DESC LIMIT 1) AS newest_hour,
    toStartOfDay(newest_hour - 1) - toIntervalDay({days:UInt32} - 1) AS first_day,
    (SELECT max(as_of_day) FROM {db}.brief_forecast
     WHERE factory_id = {factory:String}) AS forecast_day,
    -- one scan of the SKU hours: net units per cell and local day, then every brief row
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
            -- per SKU and local day first: the join below meets 24x fewer rows
            SELECT
                h.sku AS sku,
                dateDiff('day', toDate(h.hour_start), toDate(newest_hour - 1)) AS day_ago,
                sum(toInt64(h.units) - toInt64(h.cancelled_units) - toInt64(h.returned_units))
                    AS net,
                sum(h.units) AS units, sum(h.orders) AS orders, sum(h.pageviews) AS pageviews,
                sum(h.returned_units) AS returned
            FROM {db}.sku_hours AS h FINAL
            WHERE h.hour_start >= first_day AND h.hour_start < newest_hour
              AND ({factory:String} = '' OR h.sku IN (
                  SELECT sku FROM {db}.products_current WHERE factory_id = {factory:String}))
            GROUP BY sku, day_ago
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
