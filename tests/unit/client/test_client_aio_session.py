"""hwbkpt.aio_session against an in-process broker on the simulated machine: resuming
halted threads on the ResumeThreadsStream call, and with ResumeThreads on a broker
that does not offer it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import hwbkpt
from hwbkpt.v1 import broker_pb2_grpc
from hwbkptd.api.broker_service import BrokerService
from hwbkptd.api.server import RunningServer, ServerConfig, start_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = ServerConfig(listen=(f"unix:{tmp_path}/run/hwbkpt.sock",), machine="sim")
    running = await start_server(config)
    try:
        yield running
    finally:
        await running.stop(grace=0)


async def _halted(client: hwbkpt.AsyncClient) -> tuple[hwbkpt.AsyncSession, int]:
    session = await client.open_session("halter")
    pid = (await client.sim_spawn()).pid
    await session.set_breakpoint(pid=pid, address=0x1000, length=4, action="halt")
    assert (await client.sim_touch(pid, 0x1000, value=7, size=4)).halted
    return session, pid


async def test_resume_threads_reuses_one_stream(server: RunningServer) -> None:
    async with hwbkpt.AsyncClient(server.addresses[0]) as client:
        session, pid = await _halted(client)
        assert await session.resume_threads([pid]) == (pid,)
        call = session._resume_call
        assert call is not None
        # A refusal is raised as the unary call would raise it, and keeps the stream.
        with pytest.raises(hwbkpt.HwbkptError) as info:
            await session.resume_threads([pid])
        assert info.value.code == "FAILED_PRECONDITION"
        assert f"thread {pid} is not halted" in info.value.message
        assert session._resume_call is call
        assert (await client.sim_touch(pid, 0x1000, value=8, size=4)).halted
        assert await session.resume_threads() == (pid,)
        assert session._resume_call is call
        slots = await client.slot_map(pid)
        assert not any(t.halted for t in slots.threads)
        await session.close()
        assert session._resume_call is None
        assert call.done()


async def test_a_closed_session_is_refused_with_its_field(server: RunningServer) -> None:
    async with hwbkpt.AsyncClient(server.addresses[0]) as client:
        _, pid = await _halted(client)
        other = await client.open_session("other")
        await other.resume_threads(())  # opens the stream
        await client.close()
    async with hwbkpt.AsyncClient(server.addresses[0]) as client:
        stale = hwbkpt.AsyncSession(
            client, session_id="x", name="stale", token="no-such-token", lease_seconds=1
        )
        with pytest.raises(hwbkpt.HwbkptError) as info:
            await stale.resume_threads([pid])
        assert info.value.code == "NOT_FOUND"
        assert info.value.fields == ("token",)
        await stale.detach()


async def test_a_broker_without_the_stream_is_asked_with_unary_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an older hwbkptd answers: UNIMPLEMENTED, before it resumed anything.
    monkeypatch.setattr(
        BrokerService,
        "ResumeThreadsStream",
        broker_pb2_grpc.BrokerServiceServicer.ResumeThreadsStream,
    )
    config = ServerConfig(listen=(f"unix:{tmp_path}/run/hwbkpt.sock",), machine="sim")
    running = await start_server(config)
    try:
        async with hwbkpt.AsyncClient(running.addresses[0]) as client:
            session, pid = await _halted(client)
            assert await session.resume_threads([pid]) == (pid,)
            assert session._resume_unary
            assert session._resume_call is None
            with pytest.raises(hwbkpt.HwbkptError) as info:
                await session.resume_threads([pid])
            assert info.value.code == "FAILED_PRECONDITION"
    finally:
        await running.stop(grace=0)


async def test_a_broken_stream_is_replaced_by_the_next_resume(server: RunningServer) -> None:
    async with hwbkpt.AsyncClient(server.addresses[0]) as client:
        session, pid = await _halted(client)
        await session.resume_threads([pid])
        call = session._resume_call
        assert call is not None
        call.cancel()  # as if the connection broke while the stream was idle
        assert (await client.sim_touch(pid, 0x1000, value=9, size=4)).halted
        assert await session.resume_threads([pid]) == (pid,)
        assert session._resume_call is not None
        assert session._resume_call is not call
