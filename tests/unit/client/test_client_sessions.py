"""hwbkpt.Session and hwbkpt.AsyncSession against an in-process broker on the simulated
machine: both resume halted threads on one ResumeThreadsStream call, and with ResumeThreads
on a broker that does not offer it. What the broker was asked is counted on its side.

The blocking client runs its calls in a worker thread (``asyncio.to_thread``): the broker
runs on this test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hwbkpt
from hwbkpt._aio_transport import AsyncTransport
from hwbkpt._transport import Transport
from hwbkpt.v1 import broker_pb2_grpc
from hwbkptd.api.broker_service import BrokerService
from hwbkptd.api.server import ServerConfig, start_server

KINDS = ["sync", "async"]


class _Blocking:
    """A blocking client or session, its methods awaited from the event loop."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await asyncio.to_thread(attr, *args, **kwargs)
            return _Blocking(result) if isinstance(result, hwbkpt.Session) else result

        return call


async def _client(kind: str, address: str) -> Any:
    if kind == "async":
        return hwbkpt.AsyncClient(address)
    return _Blocking(await asyncio.to_thread(hwbkpt.Client, address))


@dataclass
class Asked:
    """What the broker was asked to resume threads with."""

    #: The broker offers ResumeThreadsStream.
    offered: bool
    unary: int = 0
    streams: int = 0
    streams_ended: asyncio.Event = field(default_factory=asyncio.Event)


def _count_calls(monkeypatch: pytest.MonkeyPatch, asked: Asked, *, stream: bool) -> None:
    unary = BrokerService.ResumeThreads

    async def resume_threads(self: BrokerService, request: Any, context: Any) -> Any:
        asked.unary += 1
        return await unary(self, request, context)

    monkeypatch.setattr(BrokerService, "ResumeThreads", resume_threads)
    if not stream:
        # What an older hwbkptd answers: UNIMPLEMENTED, before it resumed anything.
        refuse = broker_pb2_grpc.BrokerServiceServicer.ResumeThreadsStream

        def unimplemented(self: BrokerService, requests: Any, context: Any) -> Any:
            asked.streams += 1
            return refuse(self, requests, context)

        monkeypatch.setattr(BrokerService, "ResumeThreadsStream", unimplemented)
        return
    answer = BrokerService.ResumeThreadsStream

    async def resume_threads_stream(
        self: BrokerService, requests: Any, context: Any
    ) -> AsyncIterator[Any]:
        asked.streams += 1
        try:
            async for resp in answer(self, requests, context):
                yield resp
        finally:
            asked.streams_ended.set()

    monkeypatch.setattr(BrokerService, "ResumeThreadsStream", resume_threads_stream)


@pytest.fixture
async def broker(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Asked]]:
    asked = Asked(offered=getattr(request, "param", True))
    _count_calls(monkeypatch, asked, stream=asked.offered)
    config = ServerConfig(listen=(f"unix:{tmp_path}/run/hwbkpt.sock",), machine="sim")
    running = await start_server(config)
    try:
        yield running.addresses[0], asked
    finally:
        await running.stop(grace=0)


async def _halted(client: Any) -> tuple[Any, int]:
    session = await client.open_session("halter")
    pid = (await client.sim_spawn()).pid
    await session.set_breakpoint(pid=pid, address=0x1000, length=4, action="halt")
    await _halt(client, pid)
    return session, pid


async def _halt(client: Any, pid: int) -> None:
    assert (await client.sim_touch(pid, 0x1000, value=7, size=4)).halted


@pytest.mark.parametrize("broker", [True, False], indirect=True, ids=["stream", "no-stream"])
@pytest.mark.parametrize("kind", KINDS)
async def test_item10_both_sessions_resume_on_one_stream_or_else_with_unary_calls(
    kind: str, broker: tuple[str, Asked]
) -> None:
    address, asked = broker
    client = await _client(kind, address)
    session, pid = await _halted(client)
    assert await session.resume_threads([pid]) == (pid,)
    # A refusal is raised as the unary call would raise it, and keeps the stream.
    with pytest.raises(hwbkpt.HwbkptError) as info:
        await session.resume_threads([pid])
    assert info.value.code == "FAILED_PRECONDITION"
    assert f"thread {pid} is not halted" in info.value.message
    await _halt(client, pid)
    assert await session.resume_threads() == (pid,)
    assert not any(t.halted for t in (await client.slot_map(pid)).threads)
    await session.close()
    # One stream for the three resumes; a broker without it is asked once, then unary.
    assert (asked.streams, asked.unary) == ((1, 0) if asked.offered else (1, 3))
    if asked.offered:
        await asked.streams_ended.wait()  # closing the session ended its stream
    await client.close()


@pytest.mark.parametrize("broker", [True, False], indirect=True, ids=["stream", "no-stream"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_closed_session_is_refused_with_its_field(
    kind: str, broker: tuple[str, Asked]
) -> None:
    address, _ = broker
    client = await _client(kind, address)
    session, pid = await _halted(client)
    await session.close()  # its threads resume and its token is forgotten
    with pytest.raises(hwbkpt.HwbkptError) as info:
        await session.resume_threads([pid])
    assert info.value.code == "NOT_FOUND"
    assert info.value.fields == ("token",)
    await client.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_broken_stream_is_replaced_by_the_next_resume(
    kind: str, broker: tuple[str, Asked], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, asked = broker
    client = await _client(kind, address)
    session, pid = await _halted(client)
    transport: Any = (AsyncTransport if kind == "async" else Transport)(address)
    opened: list[Any] = []
    open_resume_stream = transport.open_resume_stream

    def recording(*args: Any) -> Any:
        opened.append(open_resume_stream(*args))
        return opened[-1]

    monkeypatch.setattr(transport, "open_resume_stream", recording)
    resumer = transport.thread_resumer()
    resume = resumer.resume if kind == "async" else _Blocking(resumer).resume
    assert await resume(session.token, [pid]) == (pid,)
    (call,) = opened
    call.cancel()  # as if the connection broke while the stream was idle
    await _halt(client, pid)
    assert await resume(session.token, [pid]) == (pid,)
    assert len(opened) == 2
    assert asked.streams == 2
    resumer.close()
    if kind == "async":
        await transport.close()
    else:
        transport.close()
    await client.close()
