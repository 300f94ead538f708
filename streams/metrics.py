"""Prometheus metrics. Label values come from topic names, partitions, reason codes and
table names, never from event fields.

The full list with meanings is in docs/ARCHITECTURE.md ("Observability"). Naming follows
the Prometheus conventions: ``c2m_`` prefix, base units (seconds), ``_total`` for counters.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, Info

#: Latency buckets from 5 ms to 5 minutes (flushes run every second by default).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

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
CATALOG_TOMBSTONES = Counter(
    "c2m_catalog_tombstones_total",
    "Tombstones (null values) read on the catalog topic: each deletes its product",
)
BATCH_SIZE = Histogram(
    "c2m_batch_size_events", "Events per processed batch",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
PROCESSING_SECONDS = Histogram(
    "c2m_batch_processing_seconds", "Time to apply one batch to the engine (processing latency)",
    buckets=_LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "c2m_end_to_end_latency_seconds",
    "Per batch: from the Kafka timestamp of its oldest record to the Kafka commit after the "
    "ClickHouse flush that covers it",
    buckets=_LATENCY_BUCKETS,
)
FLUSH_SECONDS = Histogram(
    "c2m_sink_flush_seconds", "Time of one successful ClickHouse flush", buckets=_LATENCY_BUCKETS
)
FLUSH_ROWS = Counter(
    "c2m_sink_rows_total",
    "Rows written to ClickHouse (visitor_cells: visitor hashes of the base windows before "
    "the expansion to every window size; dedup_ids: event-id hashes)",
    ["table"],
)
SINK_HEALTHY = Gauge(
    "c2m_sink_healthy",
    "1 while writes to the sink succeed, 0 from a failed write until one succeeds (the "
    "consumer is paused meanwhile)",
)
SINK_HEALTHY.set(1)
# Counted by streams.pausing the same way in the worker (its sink: ClickHouse or c2m.sink)
# and the writer (ClickHouse): a failure is every failed call, a retry every call made
# again after a failed one (so retries <= failures; a stop mid-outage leaves one more).
FLUSH_RETRIES = Counter(
    "c2m_sink_retries_total",
    "Sink calls (flush writes, restore reads) made again after a failed call, counted when "
    "the new call is made",
)
FLUSH_FAILURES = Counter(
    "c2m_sink_failures_total",
    "Failed sink calls (every failed attempt), by operation: write (flush) or read (restore)",
    ["operation"],
)
LIVE_CELLS = Gauge("c2m_live_cells", "Window cells held in memory")
DEDUP_IDS = Gauge("c2m_dedup_ids", "Event ids held in memory for deduplication")
VISITOR_ENTRIES = Gauge(
    "c2m_visitor_entries", "(cell, visitor) entries held in memory until the next flush"
)
WATERMARK_LAG = Gauge(
    "c2m_watermark_lag_seconds",
    "Wall clock minus event-time watermark, per source partition",
    ["topic", "partition"],
)
CONSUMER_LAG = Gauge(
    "c2m_consumer_lag_records",
    "Records between the end of the partition's log and its last flushed (committed) "
    "position: what is not in the sink yet; asked of the broker every C2M_LAG_INTERVAL_SECONDS",
    ["topic", "partition"],
)
PARTITIONS_ASSIGNED = Gauge("c2m_partitions_assigned", "Source partitions this worker owns")
PARTITION_STOPPED = Gauge(
    "c2m_partition_stopped",
    "1 while a source partition is stopped (paused until an operator acts): its reason is "
    "log_mismatch (a checkpoint of another log) or unreadable (a batch the consumer cannot "
    "read)",
    ["topic", "partition", "reason"],
)
REBALANCES = Counter(
    "c2m_rebalances_total", "Partition assignments received by a consumer (one per rebalance)"
)
SINK_WRITER_MESSAGES = Counter(
    "c2m_writer_messages_total", "c2m.sink messages written to ClickHouse by the writer"
)
BUILD = Info("c2m_build", "c2m-pulse build information")
ALERTS = Counter(
    "c2m_alerts_total", "Alert changes published, by rule, severity and state",
    ["kind", "severity", "state"],
)
ALERT_HOURS = Counter(
    "c2m_alert_evaluations_total", "Event-time hours evaluated by the alert rules"
)
FORECAST_SECONDS = Histogram(
    "c2m_forecast_seconds", "Time to refresh the brief's forecast (once a local day)",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120),
)

_PER_PARTITION = (WATERMARK_LAG, CONSUMER_LAG)


def forget_partition(topic: str, partition: int) -> None:
    """Drop the per-partition series of a partition this worker no longer owns."""
    for gauge in _PER_PARTITION:
        with contextlib.suppress(KeyError):
            gauge.remove(topic, str(partition))
