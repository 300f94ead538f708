"""Factory alerts, pure logic: restock and demand-surge rules and the alert lifecycle.

``inputs`` holds the hourly series the rules read (built from ClickHouse by
``streams.alerting`` or from raw events by the tests), ``restock`` and ``surge`` are the
rules, ``book`` the lifecycle (open, updated, resolved, cooldown, deterministic ids) and
``evaluator`` runs them for one finished event-time hour.
"""
