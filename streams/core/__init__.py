"""Pure logic of c2m-pulse: no Faust, no Kafka, no ClickHouse imports.

Windows, watermarks, dedup, price bands, the catalog and the demand aggregation live here
so they are unit-tested fast and reused unchanged by the worker and the benchmarks.
"""
