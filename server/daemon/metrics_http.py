"""Serving the Prometheus text format over HTTP on the event loop (``--metrics``).

The scrape runs on the loop that owns the broker, so the collector reads the broker's state
between two of its calls, never in the middle of one (prometheus-client's own HTTP server
would call it from another thread). It answers ``GET /metrics`` (and ``/``); nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from hwbkptd.api.listeners import ConfigError

__all__ = ["MetricsServer", "parse_metrics_address", "start_metrics"]

_MAX_REQUEST = 16 * 1024
_READ_TIMEOUT = 10.0


def parse_metrics_address(text: str) -> tuple[str, int]:
    """``tcp:HOST:PORT`` (port 0 picks a free one) as (host, port); ConfigError otherwise."""
    rest = text.removeprefix("tcp:")
    host, sep, port = rest.rpartition(":")
    if not text.startswith("tcp:") or not sep or not host or not port.isdigit():
        raise ConfigError(f"--metrics {text!r}: expected tcp:HOST:PORT")
    if int(port) > 65535:
        raise ConfigError(f"--metrics {text!r}: port {port} is out of range")
    return host.strip("[]"), int(port)


class MetricsServer:
    def __init__(self, server: asyncio.Server, registry: CollectorRegistry) -> None:
        self._server = server
        self._registry = registry
        host, port = server.sockets[0].getsockname()[:2]
        self.address = f"tcp:{f'[{host}]' if ':' in host else host}:{port}"

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()


async def _answer(
    registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        method, path = [*head.split(b"\r\n", 1)[0].split(b" "), b"", b""][:2]
        if method != b"GET":
            status, body, kind = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
        elif path.split(b"?")[0] in (b"/metrics", b"/"):
            status, body, kind = b"200 OK", generate_latest(registry), CONTENT_TYPE_LATEST.encode()
        else:
            status, body, kind = b"404 Not Found", b"see /metrics\n", b"text/plain"
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Type: "
            + kind
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start_metrics(address: str, registry: CollectorRegistry) -> MetricsServer:
    host, port = parse_metrics_address(address)
    try:
        server = await asyncio.start_server(
            lambda r, w: _answer(registry, r, w), host, port, limit=_MAX_REQUEST
        )
    except OSError as err:
        raise ConfigError(f"--metrics {address}: cannot listen: {err.strerror}") from None
    return MetricsServer(server, registry)
