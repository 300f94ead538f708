"""A TCP proxy that flips the last byte of a marker in what the upstream (a Kafka broker)
sends back: the record batch that holds the marker then fails its CRC at the consumer.

    python tests/chaos/corrupting_proxy.py LISTEN_PORT UPSTREAM_PORT MARKER

Run in its own process by tests/chaos/test_poison_batches.py (the broker advertises the
proxy's port, so every connection of the clients goes through it).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


async def pipe(reader: Any, writer: Any, marker: bytes) -> None:
    """Forward bytes; with a marker, keep the last len(marker) - 1 bytes back until more
    come (a marker split over two reads is still found) or 20 ms pass."""
    keep = len(marker) - 1 if marker else 0
    carry = b""
    try:
        while True:
            try:
                data = await (reader.read(65536) if not carry
                              else asyncio.wait_for(reader.read(65536), 0.02))
            except TimeoutError:
                writer.write(carry)  # nothing more for now: let the carry go
                carry = b""
                await writer.drain()
                continue
            if not data:
                break
            buf = carry + data
            if marker:
                buf = buf.replace(marker, marker[:-1] + b"#")
            cut = max(len(buf) - keep, 0)
            writer.write(buf[:cut])
            carry = buf[cut:]
            await writer.drain()
        writer.write(carry)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port: int, upstream: int, marker: bytes) -> None:
    async def handle(reader: Any, writer: Any) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(reader, up_w, b""), pipe(up_r, writer, marker),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()))
