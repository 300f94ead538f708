"""ClickHouse I/O: connection, migrations and the demand store (the sink)."""
