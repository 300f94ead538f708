"""Prometheus metrics. Label values come from topic names and reason codes, never from events."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

EVENTS = Counter(
    "c2m_events_total",
    "Input messages by topic and outcome (consumed = processed + dead_lettered + duplicate + late)",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "c2m_dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"]
)
UNKNOWN_SKU_LINES = Counter(
    "c2m_unknown_sku_lines_total", "Demand lines whose SKU is missing from the catalog", ["topic"]
)
CATALOG_PRODUCTS = Gauge("c2m_catalog_products", "SKUs known to the catalog")
BATCH_SIZE = Histogram(
    "c2m_batch_size_events", "Events per processed batch",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
PROCESSING_SECONDS = Histogram(
    "c2m_batch_processing_seconds", "Time to apply one batch to the engine"
)
FLUSH_SECONDS = Histogram("c2m_sink_flush_seconds", "Time of one ClickHouse flush")
FLUSH_ROWS = Counter("c2m_sink_rows_total", "Rows written to ClickHouse", ["table"])
FLUSH_RETRIES = Counter("c2m_sink_retries_total", "Failed ClickHouse flush attempts retried")
LIVE_CELLS = Gauge("c2m_live_cells", "Window cells held in memory")
WATERMARK_LAG = Gauge(
    "c2m_watermark_lag_seconds",
    "Wall clock minus event-time watermark, per source partition",
    ["topic", "partition"],
)
REBALANCES = Counter(
    "c2m_rebalances_total", "Partition assignments received by a consumer (one per rebalance)"
)
SINK_WRITER_MESSAGES = Counter(
    "c2m_writer_messages_total", "c2m.sink messages written to ClickHouse by the writer"
)
BUILD = Info("c2m_build", "c2m-pulse build information")
