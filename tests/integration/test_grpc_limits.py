"""Issue 12, limits over gRPC: calls per second and streams per identity at the door, the
limits in DescribeMachine, the slot map in pages, streams that end saying why, the first
page, the message size and refusals logged at a bounded rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest
import structlog
from grpc_checks import EventReader, expect_error, spec
from session_metadata import session_md

import hwbkpt
from hwbkpt.aio import AsyncClient
from hwbkpt.v1 import broker_pb2, broker_pb2_grpc, sim_pb2, sim_pb2_grpc
from hwbkptd.api.pages import MAX_PAGE_BYTES
from hwbkptd.api.server import RunningServer, ServerConfig, start_server
from hwbkptd.core.limits import Limits

RESOURCE = grpc.StatusCode.RESOURCE_EXHAUSTED


@asynccontextmanager
async def daemon(tmp_path: Path, **limits: float) -> AsyncIterator[RunningServer]:
    config = ServerConfig(
        listen=(f"unix:{tmp_path}/run/hwbkpt.sock",),
        machine="sim",
        limits=Limits(**limits),  # type: ignore[arg-type]
    )
    server = await start_server(config)
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


@asynccontextmanager
async def stub(server: RunningServer) -> AsyncIterator[broker_pb2_grpc.BrokerServiceAsyncStub]:
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        yield broker_pb2_grpc.BrokerServiceStub(channel)


async def test_item12_calls_per_second_per_identity(tmp_path: Path) -> None:
    async with daemon(tmp_path, calls_per_second=2, call_burst=5) as server, stub(server) as b:
        began = time.monotonic()
        for _ in range(5):
            await b.DescribeMachine(broker_pb2.DescribeMachineRequest())
        err = await expect_error(b.DescribeMachine(broker_pb2.DescribeMachineRequest()), RESOURCE)
        assert "calls_per_second" in (err.details() or "")
        assert "--calls-per-second" in (err.details() or "")
        await asyncio.sleep(max(0.0, 0.6 - (time.monotonic() - began)))  # a token back
        await b.DescribeMachine(broker_pb2.DescribeMachineRequest())


async def test_item12_streams_per_identity(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_streams_per_identity=2) as server, stub(server) as b:
        tokens = [
            (await b.OpenSession(broker_pb2.OpenSessionRequest(name=f"s{i}"))).token
            for i in range(3)
        ]
        readers = [
            EventReader(b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(t)))
            for t in tokens[:2]
        ]
        await asyncio.sleep(0.2)  # both attached
        third = b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(tokens[2]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in third:
                pass
        assert info.value.code() is RESOURCE
        assert "max_streams_per_identity" in (info.value.details() or "")
        await readers[0].close()  # a stream given back makes room
        await asyncio.sleep(0.1)
        again = EventReader(
            b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(tokens[2]))
        )
        await asyncio.sleep(0.2)
        assert again.error is None
        await again.close()
        await readers[1].close()


async def test_item12_describe_machine_and_info_list_the_limits(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_sessions_per_identity=9) as server:
        async with AsyncClient(server.addresses[0]) as client:
            info = await client.describe()
        shown = {x.name: x for x in info.limits}
        assert shown["max_sessions_per_identity"].value == 9
        assert shown["max_sessions_per_identity"].flag == "--max-sessions"
        assert set(shown) == {x.name for x in Limits().describe()}


async def test_item12_a_replaced_stream_ends_aborted_and_the_client_loses_it(
    tmp_path: Path,
) -> None:
    async with (
        daemon(tmp_path) as server,
        stub(server) as b,
        AsyncClient(server.addresses[0]) as client,
    ):
        if True:
            session = await client.open_session("ide")
            await asyncio.sleep(0.2)  # its stream is attached
            # Another reader with the session's token takes the stream over.
            thief = EventReader(
                b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(session.token))
            )
            with pytest.raises(hwbkpt.SessionLostError) as lost:
                await asyncio.wait_for(session.next_event(), 5)
            assert lost.value.code == "ABORTED"
            assert "replaced by a newer stream" in lost.value.message
            await thief.close()


async def test_item12_a_closed_sessions_stream_ends_failed_precondition(tmp_path: Path) -> None:
    async with daemon(tmp_path) as server, stub(server) as b:
        token = (await b.OpenSession(broker_pb2.OpenSessionRequest(name="s"))).token
        reader = EventReader(
            b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
        )
        await asyncio.sleep(0.1)
        again = EventReader(
            b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
        )
        assert await reader.end() is grpc.StatusCode.ABORTED
        await b.CloseSession(broker_pb2.CloseSessionRequest(), metadata=session_md(token))
        assert await again.end() is grpc.StatusCode.FAILED_PRECONDITION
        assert await again.call.details() == "the session was closed"


@pytest.mark.parametrize("scope", [broker_pb2.SCOPE_PROCESS, broker_pb2.SCOPE_THREAD])
async def test_item12_address_zero_is_invalid_naming_the_field(tmp_path: Path, scope: int) -> None:
    async with (
        daemon(tmp_path) as server,
        grpc.aio.insecure_channel(server.addresses[0]) as channel,
    ):
        if True:
            b = broker_pb2_grpc.BrokerServiceStub(channel)
            sim = sim_pb2_grpc.SimServiceStub(channel)
            spawned = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=1))
            token = (await b.OpenSession(broker_pb2.OpenSessionRequest(name="js"))).token
            bad = spec(scope=scope, pid=spawned.pid, tid=spawned.tids[0], address=0)
            if scope == broker_pb2.SCOPE_PROCESS:
                bad.tid = 0
            req = broker_pb2.SetBreakpointRequest(spec=bad)
            err = await expect_error(
                b.SetBreakpoint(req, metadata=session_md(token)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "spec.address",
            )
            assert "first page" in (err.details() or "")
            listed = await b.ListBreakpoints(
                broker_pb2.ListBreakpointsRequest(), metadata=session_md(token)
            )
            assert list(listed.breakpoints) == []


async def test_item12_a_message_over_the_size_limit_is_resource_exhausted(tmp_path: Path) -> None:
    async with daemon(tmp_path, max_message_bytes=64 * 1024) as server, stub(server) as b:
        err = await expect_error(
            b.OpenSession(broker_pb2.OpenSessionRequest(name="n" * 100_000)), RESOURCE
        )
        assert "larger than max" in (err.details() or "")
        # Under the limit, the field itself is judged.
        await expect_error(
            b.OpenSession(broker_pb2.OpenSessionRequest(name="n" * 1000)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name",
        )


async def test_item12_a_slot_map_over_a_page_comes_in_pages_the_client_follows(
    tmp_path: Path,
) -> None:
    # 300 threads: more than one page of the default size (the byte cap: test_pages).
    async with daemon(tmp_path) as server:
        async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
            b = broker_pb2_grpc.BrokerServiceStub(channel)
            sim = sim_pb2_grpc.SimServiceStub(channel)
            spawned = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=300))
            token = (await b.OpenSession(broker_pb2.OpenSessionRequest(name="many"))).token
            with structlog.testing.capture_logs():  # 20 audit lines, not in the test output
                for _ in range(20):
                    req = broker_pb2.SetBreakpointRequest(spec=spec(pid=spawned.pid))
                    await b.SetBreakpoint(req, metadata=session_md(token))
            sizes = []
            page_token = ""
            while True:
                page = await b.GetSlotMap(broker_pb2.GetSlotMapRequest(page_token=page_token))
                sizes.append(page.ByteSize())
                page_token = page.next_page_token
                if not page_token:
                    break
            assert len(sizes) == 2
            assert max(sizes) <= MAX_PAGE_BYTES
        async with AsyncClient(server.addresses[0]) as client:
            whole = await client.slot_map()
        assert len(whole.threads) == 300
        assert {len(t.slots[0].holders) for t in whole.threads} == {20}


async def test_item12_refusals_are_logged_at_a_bounded_rate(tmp_path: Path) -> None:
    async with (
        daemon(tmp_path, refusal_log_per_second=10, refusal_log_burst=20) as server,
        stub(server) as b,
    ):
        if True:
            with structlog.testing.capture_logs() as logs:
                began = time.monotonic()
                for _ in range(500):
                    with pytest.raises(grpc.aio.AioRpcError):
                        await b.CloseSession(
                            broker_pb2.CloseSessionRequest(), metadata=session_md("nope")
                        )
                elapsed = time.monotonic() - began
                await asyncio.sleep(1.2)  # the summary of the rest
    refused = [e for e in logs if e["event"] == "rpc refused"]
    summaries = [e for e in logs if e["event"].endswith("similar lines suppressed")]
    assert 20 <= len(refused) <= 20 + 10 * elapsed + 1
    assert summaries
    assert len(refused) + sum(e["suppressed"] for e in summaries) == 500


async def test_item12_list_breakpoints_comes_in_pages_the_session_follows(tmp_path: Path) -> None:
    async with daemon(tmp_path) as server, AsyncClient(server.addresses[0]) as client:
        spawned = await client.sim_spawn(threads=1)
        session = await client.open_session("many")
        with structlog.testing.capture_logs():
            for i in range(300):  # more than one page of the default size (256)
                await session.set_breakpoint(
                    scope="process", pid=spawned.pid, address=0x601000 + 8 * (i % 64),
                    length=8, access="write",
                )  # fmt: skip
        async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
            b = broker_pb2_grpc.BrokerServiceStub(channel)
            first = await b.ListBreakpoints(
                broker_pb2.ListBreakpointsRequest(), metadata=session_md(session.token)
            )
            assert len(first.breakpoints) == 256
            assert first.next_page_token
        listed = await session.list()
        assert [bp.id for bp in listed] == list(range(1, 301))
