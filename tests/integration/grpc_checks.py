"""Shared helpers of the gRPC integration tests: an in-process daemon, stubs and status checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2

from hwbkpt.v1 import broker_pb2, broker_pb2_grpc, sim_pb2_grpc
from hwbkptd.api.server import RunningServer, ServerConfig, start_server
from hwbkptd.daemon.machines import Machine

__all__ = [
    "Daemon",
    "EventReader",
    "expect_error",
    "running_daemon",
    "spec",
    "violations",
]


@dataclass
class Daemon:
    server: RunningServer
    channel: grpc.aio.Channel
    broker: broker_pb2_grpc.BrokerServiceAsyncStub
    sim: sim_pb2_grpc.SimServiceAsyncStub
    address: str


@asynccontextmanager
async def running_daemon(
    tmp_path: Path, *, machine: str = "sim", built: Machine | None = None
) -> AsyncIterator[Daemon]:
    """An in-process daemon on a Unix socket in ``tmp_path``, and a client channel to it."""
    config = ServerConfig(listen=(f"unix:{tmp_path}/run/hwbkpt.sock",), machine=machine)
    server = await start_server(config, built)
    address = server.addresses[0]
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield Daemon(
                server=server,
                channel=channel,
                broker=broker_pb2_grpc.BrokerServiceStub(channel),
                sim=sim_pb2_grpc.SimServiceStub(channel),
                address=address,
            )
    finally:
        await server.stop(grace=1.0)


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    """The BadRequest field paths of a failed call (checks the rich status matches the code)."""
    metadata: Any = err.trailing_metadata()  # grpc-stubs types the sync Call's, not aio's
    for key, value in metadata or ():
        if key != "grpc-status-details-bin":
            continue
        rich = status_pb2.Status.FromString(value)
        assert rich.code == err.code().value[0]
        fields: list[str] = []
        for detail in rich.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [v.field for v in bad.field_violations]
        return fields
    return []


async def expect_error(
    call: Awaitable[object], code: grpc.StatusCode, field: str | None = None
) -> grpc.aio.AioRpcError:
    """Await a call that must fail with ``code`` and, when given, a BadRequest on ``field``."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() is code, f"{err.code()} {err.details()}"
    assert violations(err) == ([] if field is None else [field]), err.details()
    return err


class EventReader:
    """Reads a StreamEvents call event by event.

    A task drains the call into a queue: cancelling a grpc.aio ``read()`` (as a
    timeout would) cancels the whole call, waiting on a queue does not.
    """

    def __init__(self, call: Any) -> None:
        self.call = call
        self.error: grpc.aio.AioRpcError | None = None
        self._queue: asyncio.Queue[broker_pb2.Event | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            async for reply in self.call:
                for event in reply.events:
                    self._queue.put_nowait(event)
        except grpc.aio.AioRpcError as err:
            self.error = err
        finally:
            self._queue.put_nowait(None)

    async def next(self, kind: str | None = None, wait: float = 5.0) -> broker_pb2.Event:
        """The next event (of ``kind`` when given), skipping others."""
        while True:
            event = await asyncio.wait_for(self._queue.get(), wait)
            assert event is not None, f"the event stream ended: {self.error}"
            if kind is None or event.WhichOneof("kind") == kind:
                return event

    async def quiet(self, seconds: float = 0.3) -> list[broker_pb2.Event]:
        """Every event that arrives until ``seconds`` pass without one."""
        events: list[broker_pb2.Event] = []
        while True:
            try:
                event = await asyncio.wait_for(self._queue.get(), seconds)
            except TimeoutError:
                return events
            if event is None:
                self._queue.put_nowait(None)
                return events
            events.append(event)

    async def end(self, wait: float = 5.0) -> grpc.StatusCode:
        """Wait for the stream to end; its status code."""
        await asyncio.wait_for(asyncio.shield(self._task), wait)
        code: grpc.StatusCode = await self.call.code()
        return code

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def spec(**fields: Any) -> broker_pb2.BreakpointSpec:
    """A process-scope 4-byte write watch, with ``fields`` overriding."""
    values: dict[str, Any] = {
        "scope": broker_pb2.SCOPE_PROCESS,
        "address": 0x1000,
        "length": 4,
        "access": broker_pb2.ACCESS_WRITE,
    }
    values.update(fields)
    return broker_pb2.BreakpointSpec(**values)
