-- c2m-pulse migration 0010: who contributes to a cell, and market numbers that reveal no
-- single shop (issue 22; streams/core/kanon.py, docs/SECURITY.md). {db} is the database
-- identifier, {tz} the market time zone.
--
-- Workers write, with each flush, the shops whose events a base cell counted (contributor
-- tags: the shop id's 64-bit hash, its two lowest bits 0 for orders, 1 for page views,
-- 2 for cancels and returns) to
-- shop_feed; shop_feed_expand writes them to every window they count in (like
-- visitor_feed), and the serving refresh keeps each demand_cells row's distinct tags in
-- its shops column. The market views fold what fewer than k shops (pipeline_settings
-- 'min_shops', C2M_MIN_SHOPS_PER_SIGNAL) made into its parent and withhold the rest.
-- Rows from before this migration have no contributors: they are withheld from the
-- market views until the topics are replayed into a new database.

CREATE TABLE IF NOT EXISTS {db}.shop_feed
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       String,
    color          String,
    size           String,
    price_band     LowCardinality(String),
    region         String,
    shop_tags      Array(UInt64),
    windows        Array(Tuple(UInt32, DateTime('UTC')))
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {db}.shop_cells
(
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    category       LowCardinality(String),
    color          LowCardinality(String),
    size           LowCardinality(String),
    price_band     LowCardinality(String),
    region         LowCardinality(String),
    shop_tag       UInt64 COMMENT 'BLAKE2b-64 of shop_id, 2 lowest bits: 0 orders, 1 views, 2 returns'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_seconds, window_start, category, color, size, price_band, region, shop_tag);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.shop_feed_expand TO {db}.shop_cells AS
SELECT w.1 AS window_seconds, w.2 AS window_start, category, color, size, price_band, region,
       shop_tag
FROM {db}.shop_feed
ARRAY JOIN shop_tags AS shop_tag
ARRAY JOIN windows AS w;

ALTER TABLE {db}.demand_cells
    ADD COLUMN IF NOT EXISTS shops Array(UInt64) DEFAULT [] COMMENT 'distinct contributor tags' AFTER unique_visitors;

-- The shop that lists a product (the contributor of its SKU-level numbers, e.g. lost sales).
ALTER TABLE {db}.products ADD COLUMN IF NOT EXISTS shop_id String DEFAULT '';

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
    argMax(moq, ts)            AS moq,
    argMax(shop_id, ts)        AS shop_id
FROM {db}.products
GROUP BY sku
HAVING argMax(deleted, ts) = 0;

-- demand_rolling as in 0007, with each (horizon, cell)'s contributors.
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
    if(sum(pv) = 0, 0, sum(o) / sum(pv))             AS conversion_rate,
    arraySort(groupUniqArrayArray(sh))               AS shops
FROM
(
    SELECT '1h' AS horizon, as_of_5m AS as_of, category, color, size, price_band, region,
           orders AS o, units AS u, gmv_e4 AS g, cancelled_units AS cu, returned_units AS ru,
           pageviews AS pv, shops AS sh
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 300 AND window_start >= as_of_5m - INTERVAL 1 HOUR
      AND window_start < as_of_5m
    UNION ALL
    SELECT '24h', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews, shops
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 3600 AND window_start >= as_of_1h - INTERVAL 24 HOUR
      AND window_start < as_of_1h
    UNION ALL
    SELECT '7d', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews, shops
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 86400 AND window_start >= day_0 AND window_start < day_1
    UNION ALL
    SELECT '7d', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews, shops
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 3600 AND ((window_start >= lo_7d AND window_start < day_0)
                                     OR (window_start >= day_1 AND window_start < as_of_1h))
)
GROUP BY horizon, as_of, category, color, size, price_band, region;

-- Market demand of one window size in [from_s, to_s) (epoch seconds of window starts):
-- every row comes from at least k shops (for its orders, its page views, its cancels and
-- returns, whichever it has).
-- A cell below that is folded: fold_level 1 = the cells of one category, colour, size and
-- price band merged over regions (region ''), 2 = a category's remaining cells (colour,
-- size, price band, region ''), 3 = the market's remaining cells (all ''); what is still
-- below k is withheld. Query: SELECT * FROM c2m.market_demand(seconds=3600,
-- from_s=1762790400, to_s=1762876800). Runs with its definer's rights, so factory users
-- read it without access to the cells themselves.
CREATE OR REPLACE VIEW {db}.market_demand DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
    window_seconds, window_start, window_end,
    category, color, size, price_band, region, fold_level,
    orders, units, gmv, cancelled_units, returned_units,
    toInt64(units) - toInt64(cancelled_units) - toInt64(returned_units) AS net_units,
    pageviews,
    if(pageviews = 0, 0, orders / pageviews) AS conversion_rate
FROM
(
    SELECT
        window_seconds, window_start, any(window_end) AS window_end,
        f_category AS category, f_color AS color, f_size AS size, f_band AS price_band,
        f_region AS region, level AS fold_level,
        sum(orders) AS orders, sum(units) AS units, sum(gmv_e4) / 10000 AS gmv,
        sum(cancelled_units) AS cancelled_units, sum(returned_units) AS returned_units,
        sum(pageviews) AS pageviews
    FROM
    (
        SELECT *,
               multiIf(p0, 0, p1, 1, p2, 2, p3, 3, 4) AS level,
               if(level <= 2, category, '') AS f_category,
               if(level <= 1, color, '') AS f_color,
               if(level <= 1, size, '') AS f_size,
               if(level <= 1, price_band, '') AS f_band,
               if(level = 0, region, '') AS f_region
        FROM
        (
            SELECT *,
                   arrayCount(x -> bitAnd(x, 3) = 0, u3) AS o3,
                   arrayCount(x -> bitAnd(x, 3) = 1, u3) AS v3,
                   arrayCount(x -> bitAnd(x, 3) = 2, u3) AS r3,
                   (o3 + v3 + r3 > 0 AND (o3 = 0 OR o3 >= k)
                    AND (v3 = 0 OR v3 >= k)
                    AND (r3 = 0 OR r3 >= k)) AS p3
            FROM
            (
                SELECT *,
                       groupUniqArrayArrayIf(shops, NOT p0 AND NOT p1 AND NOT p2)
                           OVER (PARTITION BY window_start) AS u3
                FROM
                (
                    SELECT *,
                           arrayCount(x -> bitAnd(x, 3) = 0, u2) AS o2,
                           arrayCount(x -> bitAnd(x, 3) = 1, u2) AS v2,
                           arrayCount(x -> bitAnd(x, 3) = 2, u2) AS r2,
                           (o2 + v2 + r2 > 0 AND (o2 = 0 OR o2 >= k)
                            AND (v2 = 0 OR v2 >= k)
                            AND (r2 = 0 OR r2 >= k)) AS p2
                    FROM
                    (
                        SELECT *,
                               groupUniqArrayArrayIf(shops, NOT p0 AND NOT p1)
                                   OVER (PARTITION BY window_start, category) AS u2
                        FROM
                        (
                            SELECT *,
                                   arrayCount(x -> bitAnd(x, 3) = 0, u1) AS o1,
                                   arrayCount(x -> bitAnd(x, 3) = 1, u1) AS v1,
                                   arrayCount(x -> bitAnd(x, 3) = 2, u1) AS r1,
                                   (o1 + v1 + r1 > 0 AND (o1 = 0 OR o1 >= k)
                                    AND (v1 = 0 OR v1 >= k)
                                    AND (r1 = 0 OR r1 >= k)) AS p1
                            FROM
                            (
                                SELECT *,
                                       groupUniqArrayArrayIf(shops, NOT p0) OVER (
                                           PARTITION BY window_start, category, color, size,
                                                        price_band) AS u1
                                FROM
                                (
                                    SELECT window_seconds, window_start, window_end,
                                           category, color, size, price_band, region,
                                           orders, units, gmv_e4, cancelled_units,
                                           returned_units, pageviews, shops,
                                           ifNull((SELECT argMax(value, updated_at)
                                                   FROM {db}.pipeline_settings
                                                   WHERE name = 'min_shops'), 3) AS k,
                                           arrayCount(x -> bitAnd(x, 3) = 0, shops) AS o0,
                                           arrayCount(x -> bitAnd(x, 3) = 1, shops) AS v0,
                                           arrayCount(x -> bitAnd(x, 3) = 2, shops) AS r0,
                                           (o0 + v0 + r0 > 0 AND (o0 = 0 OR o0 >= k)
                                            AND (v0 = 0 OR v0 >= k)
                                            AND (r0 = 0 OR r0 >= k)) AS p0
                                    FROM {db}.demand_cells FINAL
                                    WHERE window_seconds = {seconds:UInt32}
                                      AND window_start >= toDateTime({from_s:Int64})
                                      AND window_start < toDateTime({to_s:Int64})
                                )
                            )
                        )
                    )
                )
            )
        )
    )
    WHERE level < 4
    GROUP BY window_seconds, window_start, category, color, size, price_band, region,
             fold_level
);

-- Market rolling demand (demand_rolling, folded the same way per horizon): what the web
-- view's demand sections and the dashboards' rolling table show to everyone.
CREATE OR REPLACE VIEW {db}.market_rolling DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
    horizon, as_of, category, color, size, price_band, region, fold_level,
    orders, units, gmv, cancelled_units, returned_units,
    toInt64(units) - toInt64(cancelled_units) - toInt64(returned_units) AS net_units,
    pageviews,
    if(pageviews = 0, 0, orders / pageviews) AS conversion_rate
FROM
(
    SELECT
        horizon, any(as_of) AS as_of,
        f_category AS category, f_color AS color, f_size AS size, f_band AS price_band,
        f_region AS region, level AS fold_level,
        sum(orders) AS orders, sum(units) AS units, sum(gmv) AS gmv,
        sum(cancelled_units) AS cancelled_units, sum(returned_units) AS returned_units,
        sum(pageviews) AS pageviews
    FROM
    (
        SELECT *,
               multiIf(p0, 0, p1, 1, p2, 2, p3, 3, 4) AS level,
               if(level <= 2, category, '') AS f_category,
               if(level <= 1, color, '') AS f_color,
               if(level <= 1, size, '') AS f_size,
               if(level <= 1, price_band, '') AS f_band,
               if(level = 0, region, '') AS f_region
        FROM
        (
            SELECT *,
                   arrayCount(x -> bitAnd(x, 3) = 0, u3) AS o3,
                   arrayCount(x -> bitAnd(x, 3) = 1, u3) AS v3,
                   arrayCount(x -> bitAnd(x, 3) = 2, u3) AS r3,
                   (o3 + v3 + r3 > 0 AND (o3 = 0 OR o3 >= k)
                    AND (v3 = 0 OR v3 >= k)
                    AND (r3 = 0 OR r3 >= k)) AS p3
            FROM
            (
                SELECT *,
                       groupUniqArrayArrayIf(shops, NOT p0 AND NOT p1 AND NOT p2)
                           OVER (PARTITION BY horizon) AS u3
                FROM
                (
                    SELECT *,
                           arrayCount(x -> bitAnd(x, 3) = 0, u2) AS o2,
                           arrayCount(x -> bitAnd(x, 3) = 1, u2) AS v2,
                           arrayCount(x -> bitAnd(x, 3) = 2, u2) AS r2,
                           (o2 + v2 + r2 > 0 AND (o2 = 0 OR o2 >= k)
                            AND (v2 = 0 OR v2 >= k)
                            AND (r2 = 0 OR r2 >= k)) AS p2
                    FROM
                    (
                        SELECT *,
                               groupUniqArrayArrayIf(shops, NOT p0 AND NOT p1)
                                   OVER (PARTITION BY horizon, category) AS u2
                        FROM
                        (
                            SELECT *,
                                   arrayCount(x -> bitAnd(x, 3) = 0, u1) AS o1,
                                   arrayCount(x -> bitAnd(x, 3) = 1, u1) AS v1,
                                   arrayCount(x -> bitAnd(x, 3) = 2, u1) AS r1,
                                   (o1 + v1 + r1 > 0 AND (o1 = 0 OR o1 >= k)
                                    AND (v1 = 0 OR v1 >= k)
                                    AND (r1 = 0 OR r1 >= k)) AS p1
                            FROM
                            (
                                SELECT *,
                                       groupUniqArrayArrayIf(shops, NOT p0) OVER (
                                           PARTITION BY horizon, category, color, size,
                                                        price_band) AS u1
                                FROM
                                (
                                    SELECT horizon, as_of, category, color, size, price_band,
                                           region, orders, units, gmv, cancelled_units,
                                           returned_units, pageviews, shops,
                                           ifNull((SELECT argMax(value, updated_at)
                                                   FROM {db}.pipeline_settings
                                                   WHERE name = 'min_shops'), 3) AS k,
                                           arrayCount(x -> bitAnd(x, 3) = 0, shops) AS o0,
                                           arrayCount(x -> bitAnd(x, 3) = 1, shops) AS v0,
                                           arrayCount(x -> bitAnd(x, 3) = 2, shops) AS r0,
                                           (o0 + v0 + r0 > 0 AND (o0 = 0 OR o0 >= k)
                                            AND (v0 = 0 OR v0 >= k)
                                            AND (r0 = 0 OR r0 >= k)) AS p0
                                    FROM {db}.demand_rolling
                                )
                            )
                        )
                    )
                )
            )
        )
    )
    WHERE level < 4
    GROUP BY horizon, category, color, size, price_band, region, fold_level
);
