"""Seeded shop-event simulator: realistic, reproducible traffic for the ``shop.*`` topics.

``streams.sim.model`` is pure logic (a deterministic ``ShopSimulator`` and
``generate_history``); ``streams.sim.producer`` replays it onto Kafka in (accelerated)
real time with ``run_simulation``.
"""
