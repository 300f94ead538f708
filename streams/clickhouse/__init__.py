"""ClickHouse I/O: connection, migrations and the demand store (the sink)."""

#: The largest source partition and offset the tables hold (``source_partition UInt16``;
#: ``position UInt64`` written from a Kafka offset, an int64). ClickHouse would wrap a
#: larger query parameter around (65536 reads as partition 0), so the store and the CLI
#: refuse larger ones.
MAX_PARTITION = 2**16 - 1
MAX_OFFSET = 2**63 - 1
