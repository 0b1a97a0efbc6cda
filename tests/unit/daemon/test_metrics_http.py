"""hwbkptd.daemon.metrics_http: the --metrics address, and the endpoint's answers over a
real socket."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import Counter
from prometheus_client.registry import CollectorRegistry

from hwbkptd.api.listeners import ConfigError
from hwbkptd.daemon.metrics_http import parse_metrics_address, start_metrics


@pytest.mark.parametrize(
    ("text", "want"),
    [("tcp:127.0.0.1:9464", ("127.0.0.1", 9464)), ("tcp:[::1]:0", ("::1", 0))],
)
def test_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_metrics_address(text) == want


@pytest.mark.parametrize("text", ["9464", "tcp:host", "tcp::1", "unix:/x", "tcp:h:99999"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="--metrics"):
        parse_metrics_address(text)


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_serves_metrics_and_refuses_the_rest() -> None:
    registry = CollectorRegistry()
    Counter("hwbkpt_test", "a test counter", registry=registry).inc(3)
    server = await start_metrics("tcp:127.0.0.1:0", registry)
    port = int(server.address.rsplit(":", 1)[1])
    try:
        ok = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\nhwbkpt_test_total 3.0\n" in ok
        assert (await _get(port, b"GET /other HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _get(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    finally:
        await server.close()
    taken = await start_metrics("tcp:127.0.0.1:0", registry)
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            await start_metrics(taken.address, registry)
    finally:
        await taken.close()
