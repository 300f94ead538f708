"""Chaos tests reuse the integration fixtures (real broker, real worker processes, chDB)."""

from tests.integration.conftest import broker, worker_factory

__all__ = ["broker", "worker_factory"]
