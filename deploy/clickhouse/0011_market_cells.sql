-- c2m-pulse migration 0011: the market fold stored at write time (issue 22 within issue
-- 17's read budget; streams/clickhouse/market.py, docs/SECURITY.md). {db} is the database
-- identifier, {tz} the market time zone.
--
-- market_demand and market_rolling (0010) folded every cell of the range at query time:
-- 10-20x the cost of demand_by_attribute, growing with the range. They now read folds
-- written by the process that writes the cells: market_cells per window (re-folded by
-- every flush that touched a window shorter than a day, daily windows and the rolling
-- horizons periodically), market_rolling_cells per horizon. Every refresh writes a
-- window's (horizon's) rows with one version, the sum of the versions of the cells it
-- read, and a marker row (fold_level 4, no numbers); the views read the newest version
-- of each window, for the current k. The migration's Python step fills both from the
-- cells already held.

CREATE TABLE IF NOT EXISTS {db}.market_cells
(
    window_seconds  UInt32,
    window_start    DateTime('{tz}'),
    window_end      DateTime('{tz}'),
    category        LowCardinality(String),
    color           LowCardinality(String),
    size            LowCardinality(String),
    price_band      LowCardinality(String),
    region          LowCardinality(String),
    fold_level      UInt8 COMMENT '0 a cell, 1-3 folded into that parent, 4 the marker of a refresh',
    orders          UInt64,
    units           UInt64,
    gmv_e4          Int64 COMMENT 'GMV in 1/10000 CNY',
    cancelled_units UInt64,
    returned_units  UInt64,
    pageviews       UInt64,
    k               UInt32 COMMENT 'min_shops the window was folded with',
    version         UInt64 COMMENT 'sum of the window''s demand_cells versions read'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_seconds, window_start, k, fold_level, category, color, size, price_band, region);

CREATE TABLE IF NOT EXISTS {db}.market_rolling_cells
(
    horizon         LowCardinality(String),
    as_of           DateTime('{tz}'),
    category        LowCardinality(String),
    color           LowCardinality(String),
    size            LowCardinality(String),
    price_band      LowCardinality(String),
    region          LowCardinality(String),
    fold_level      UInt8 COMMENT '0 a cell, 1-3 folded into that parent, 4 the marker of a refresh',
    orders          UInt64,
    units           UInt64,
    gmv_e4          Int64,
    cancelled_units UInt64,
    returned_units  UInt64,
    pageviews       UInt64,
    k               UInt32,
    version         UInt64 COMMENT 'sum of the versions of the horizon''s cells read'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(as_of)
ORDER BY (horizon, as_of, k, fold_level, category, color, size, price_band, region);

-- Market demand of one window size in [from_s, to_s) (epoch seconds of window starts), as
-- 0010 defined it (every row from at least k shops per family it has; fold_level 1-3 =
-- folded into its parent, dimensions ''): the newest fold of each window, by primary-key
-- range. Query: SELECT * FROM c2m.market_demand(seconds=3600, from_s=1762790400,
-- to_s=1762876800). Runs with its definer's rights (factory users read no cells).
CREATE OR REPLACE VIEW {db}.market_demand DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
    window_seconds, window_start, window_end,
    category, color, size, price_band, region, fold_level,
    orders, units, gmv_e4 / 10000 AS gmv, cancelled_units, returned_units,
    toInt64(units) - toInt64(cancelled_units) - toInt64(returned_units) AS net_units,
    pageviews,
    if(pageviews = 0, 0, orders / pageviews) AS conversion_rate
FROM {db}.market_cells FINAL
WHERE window_seconds = {seconds:UInt32}
  AND window_start >= toDateTime({from_s:Int64}) AND window_start < toDateTime({to_s:Int64})
  AND fold_level < 4
  AND k = toUInt32(ifNull((SELECT argMaxOrNull(value, updated_at) FROM {db}.pipeline_settings
                           WHERE name = 'min_shops'), 3))
  AND (window_start, version) IN (
      SELECT window_start, max(version)
      FROM {db}.market_cells
      WHERE window_seconds = {seconds:UInt32}
        AND window_start >= toDateTime({from_s:Int64}) AND window_start < toDateTime({to_s:Int64})
        AND fold_level = 4
        AND k = toUInt32(ifNull((SELECT argMaxOrNull(value, updated_at) FROM {db}.pipeline_settings
                                 WHERE name = 'min_shops'), 3))
      GROUP BY window_start);

-- Market rolling demand (demand_rolling folded per horizon): the newest fold of each
-- horizon (the periodic refresh: C2M_MARKET_REFRESH_SECONDS).
CREATE OR REPLACE VIEW {db}.market_rolling DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
    horizon, as_of, category, color, size, price_band, region, fold_level,
    orders, units, gmv_e4 / 10000 AS gmv, cancelled_units, returned_units,
    toInt64(units) - toInt64(cancelled_units) - toInt64(returned_units) AS net_units,
    pageviews,
    if(pageviews = 0, 0, orders / pageviews) AS conversion_rate
FROM {db}.market_rolling_cells FINAL
WHERE fold_level < 4
  AND k = toUInt32(ifNull((SELECT argMaxOrNull(value, updated_at) FROM {db}.pipeline_settings
                           WHERE name = 'min_shops'), 3))
  AND (horizon, as_of, version) IN (
      SELECT horizon, newest.1, newest.2
      FROM
      (
          SELECT horizon, max((as_of, version)) AS newest
          FROM {db}.market_rolling_cells
          WHERE fold_level = 4
            AND k = toUInt32(ifNull((SELECT argMaxOrNull(value, updated_at) FROM {db}.pipeline_settings
                                     WHERE name = 'min_shops'), 3))
          GROUP BY horizon
      ));
