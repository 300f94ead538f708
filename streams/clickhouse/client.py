"""Open a clickhouse-connect client for a ``chdb://`` (embedded) or ``http(s)://`` DSN."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from streams.errors import ConfigError, SinkUnavailable
from streams.settings import Settings, mask_url


class ChdbInUse(SinkUnavailable):
    """Another process (a running ``c2m demo`` or ``c2m worker``) has the embedded
    ClickHouse's data directory open: chDB allows one process per directory."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the embedded ClickHouse at {path} is in use by another process (a running "
            "c2m demo or c2m worker): stop it, or use another C2M_DATA_DIR"
        )
        self.path = path


class RunningHere(ChdbInUse):
    """A ``c2m demo`` or ``c2m worker`` already runs on this data directory (it holds its
    embedded ClickHouse): a second one cannot start there."""

    def __init__(self, path: str) -> None:
        SinkUnavailable.__init__(
            self,
            f"a c2m demo or worker already runs in this folder (it holds the embedded "
            f"ClickHouse at {path}): stop it (Ctrl-C in its terminal), or start this one in "
            "another folder (or with another C2M_DATA_DIR)",
        )
        self.path = path


class NoDemoHere(SinkUnavailable):
    """A command that only reads found no embedded ClickHouse in this folder's data
    directory: no demo runs or ran here (and a read creates nothing)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no c2m demo runs in this folder (no embedded ClickHouse at {path}): start "
            "`c2m demo` here, or `cd` to the folder of your demo, or set C2M_CLICKHOUSE_URL "
            "to a ClickHouse server"
        )


def chdb_path(settings: Settings) -> str | None:
    """The embedded ClickHouse's directory, or None when ClickHouse is a server."""
    url = settings.effective_clickhouse_url
    return url.removeprefix("chdb://") if urlsplit(url).scheme == "chdb" else None


def chdb_held(path: str) -> bool:
    """Does a process hold the embedded ClickHouse at ``path`` open? chDB, as the ClickHouse
    server does, keeps an exclusive ``flock`` on ``<path>/status`` while it is open: a
    non-blocking shared lock is refused then. (Ours is let go at once; a chDB starting in
    that microsecond would find the directory locked, as with any other reader.)"""
    try:
        fd = os.open(Path(path) / "status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # never opened (or not readable): nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases our lock
    return False


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[bytes]]:
    """Collect what native code writes to file descriptor 2 (chDB prints its start-up
    errors there, e.g. "Cannot lock file .../status") instead of showing it."""
    got: list[bytes] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield got
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            got.append(tmp.read())


def connect(settings: Settings, *, create: bool = True) -> Any:
    """A client for the configured ClickHouse. One chDB engine path per process.
    ``create=False`` (commands that only read): an embedded ClickHouse that does not exist
    yet is not created; NoDemoHere says that no demo runs in this folder."""
    path = chdb_path(settings)
    if not create and path and not Path(path).exists():
        raise NoDemoHere(path)
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
                try:
                    Path(path).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot create the embedded ClickHouse directory {path} "
                        f"({exc.strerror or exc}): check C2M_DATA_DIR or C2M_CLICKHOUSE_URL"
                    ) from None
            return _open_chdb(url, path)
        if scheme in ("http", "https"):
            return clickhouse_connect.get_client(
                dsn=url,
                username=settings.clickhouse_user,
                password=settings.clickhouse_password.get_secret_value(),
                connect_timeout=5,
                send_receive_timeout=60,
                autogenerate_session_id=False,
            )
    except (ChdbInUse, ConfigError):
        raise
    except Exception as exc:
        # Never echo the DSN with credentials: mask_url removes any password.
        raise SinkUnavailable(
            f"cannot connect to ClickHouse at {mask_url(url)} ({type(exc).__name__}): is the "
            "server running? check C2M_CLICKHOUSE_URL"
        ) from None
    raise ConfigError(f"unsupported ClickHouse URL scheme {scheme!r} (use chdb:// or http://)")


def _open_chdb(url: str, path: str) -> Any:
    with _stderr_captured() as captured:
        try:
            client = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            failed: Exception | None = exc
        else:
            failed = None
    said = b"".join(captured).decode("utf-8", "replace")
    if failed is None:
        if said:
            sys.stderr.write(said)  # not ours to hide
        return client
    if "Cannot lock file" in said or "Cannot lock file" in str(failed):
        raise ChdbInUse(path) from None
    raise failed
