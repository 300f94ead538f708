"""Open a clickhouse-connect client for a ``chdb://`` (embedded) or ``http(s)://`` DSN."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from streams.errors import ConfigError, SinkUnavailable
from streams.settings import Settings, mask_url


def connect(settings: Settings) -> Any:
    """A client for the configured ClickHouse. One chDB engine path per process."""
    client = _connect(settings)
    if settings.clickhouse_fault_file is not None:
        from streams.clickhouse.faults import FaultInjectingClient

        return FaultInjectingClient(client, settings.clickhouse_fault_file)
    return client


def _connect(settings: Settings) -> Any:
    url = settings.effective_clickhouse_url
    scheme = urlsplit(url).scheme
    try:
        if scheme == "chdb":
            path = url.removeprefix("chdb://")
            if path:
                Path(path).mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=url)
        if scheme in ("http", "https"):
            return clickhouse_connect.get_client(
                dsn=url,
                username=settings.clickhouse_user,
                password=settings.clickhouse_password.get_secret_value(),
                connect_timeout=5,
                send_receive_timeout=60,
                autogenerate_session_id=False,
            )
    except Exception as exc:
        # Never echo the DSN with credentials: mask_url removes any password.
        raise SinkUnavailable(
            f"cannot connect to ClickHouse at {mask_url(url)}: {type(exc).__name__}"
        ) from None
    raise ConfigError(f"unsupported ClickHouse URL scheme {scheme!r} (use chdb:// or http://)")
