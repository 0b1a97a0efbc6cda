"""hwbkptd.api.sim_service over real gRPC: processes, threads, touches and their attribution."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
from grpc_checks import Daemon, expect_error, running_daemon, spec
from session_metadata import session_md

from hwbkpt.v1 import broker_pb2, sim_pb2
from hwbkptd.api.sim_service import MAX_SPAWN_THREADS
from hwbkptd.daemon.machines import build_machine

WRITE = broker_pb2.ACCESS_WRITE
READ = broker_pb2.ACCESS_READ


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path) as d:
        yield d


async def _session(d: Daemon, name: str) -> str:
    return (await d.broker.OpenSession(broker_pb2.OpenSessionRequest(name=name))).token


async def test_processes_and_threads(daemon: Daemon) -> None:
    sim = daemon.sim
    proc = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=3))
    assert list(proc.tids) == [proc.pid, proc.pid + 1, proc.pid + 2]
    one = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest())
    assert list(one.tids) == [one.pid]
    extra = await sim.SpawnThread(sim_pb2.SpawnThreadRequest(pid=proc.pid))
    assert extra.tid not in proc.tids

    slots = await daemon.broker.GetSlotMap(broker_pb2.GetSlotMapRequest(pid=proc.pid))
    assert {t.tid for t in slots.threads} >= {*proc.tids, extra.tid}

    await sim.EndThread(sim_pb2.EndThreadRequest(tid=extra.tid))
    await expect_error(
        sim.EndThread(sim_pb2.EndThreadRequest(tid=extra.tid)), grpc.StatusCode.NOT_FOUND, "tid"
    )
    await sim.EndProcess(sim_pb2.EndProcessRequest(pid=proc.pid, exit_code=3))
    await expect_error(
        sim.SpawnThread(sim_pb2.SpawnThreadRequest(pid=proc.pid)), grpc.StatusCode.NOT_FOUND, "pid"
    )
    await expect_error(
        sim.EndProcess(sim_pb2.EndProcessRequest(pid=proc.pid)), grpc.StatusCode.NOT_FOUND, "pid"
    )
    await expect_error(
        daemon.broker.GetSlotMap(broker_pb2.GetSlotMapRequest(pid=proc.pid)),
        grpc.StatusCode.NOT_FOUND,
        "pid",
    )
    everything = await daemon.broker.GetSlotMap(broker_pb2.GetSlotMapRequest())
    assert {t.tid for t in everything.threads} == {one.pid}


async def test_touch_names_every_holder_of_a_shared_slot(daemon: Daemon) -> None:
    b, sim = daemon.broker, daemon.sim
    pid = (await sim.SpawnProcess(sim_pb2.SpawnProcessRequest())).pid
    ids = []
    for name in ("a", "b"):
        token = await _session(daemon, name)
        req = broker_pb2.SetBreakpointRequest(spec=spec(pid=pid, address=0x4000))
        ids.append((await b.SetBreakpoint(req, metadata=session_md(token))).breakpoint.id)

    slots = await b.GetSlotMap(broker_pb2.GetSlotMapRequest(pid=pid))
    used = [s for t in slots.threads if t.tid == pid for s in t.slots if s.holders]
    assert len(used) == 1  # identical chunks share one slot
    assert sorted(h.breakpoint_id for h in used[0].holders) == sorted(ids)

    write = sim_pb2.TouchRequest(pid=pid, address=0x4002, access=WRITE, value=b"\x01")
    assert sorted((await sim.Touch(write)).breakpoint_ids) == sorted(ids)
    # A write watch does not see reads, nor accesses next to it.
    read = sim_pb2.TouchRequest(pid=pid, address=0x4000, access=READ, size=4)
    assert list((await sim.Touch(read)).breakpoint_ids) == []
    beside = sim_pb2.TouchRequest(pid=pid, address=0x4004, access=WRITE, value=b"\x01")
    assert list((await sim.Touch(beside)).breakpoint_ids) == []


async def test_touch_with_explicit_thread(daemon: Daemon) -> None:
    b, sim = daemon.broker, daemon.sim
    proc = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=2))
    token = await _session(daemon, "t")
    only_second = spec(scope=broker_pb2.SCOPE_THREAD, pid=proc.pid, tid=proc.tids[1])
    req = broker_pb2.SetBreakpointRequest(spec=only_second)
    bp = (await b.SetBreakpoint(req, metadata=session_md(token))).breakpoint
    touch = sim_pb2.TouchRequest(pid=proc.pid, address=0x1000, access=WRITE, value=b"\x01")
    assert list((await sim.Touch(touch)).breakpoint_ids) == []  # tid 0: the first thread
    touch.tid = proc.tids[1]
    assert list((await sim.Touch(touch)).breakpoint_ids) == [bp.id]


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            sim_pb2.SpawnProcessRequest(threads=MAX_SPAWN_THREADS + 1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "threads",
        ),
        (sim_pb2.TouchRequest(access=broker_pb2.ACCESS_READ_WRITE), None, "access"),
        (sim_pb2.TouchRequest(access=broker_pb2.ACCESS_UNSPECIFIED), None, "access"),
        (sim_pb2.TouchRequest(access=READ, value=b"\x01"), None, "value"),
        (sim_pb2.TouchRequest(access=WRITE, value=b"\x01", size=2), None, "size"),
        (sim_pb2.TouchRequest(access=READ, size=1 << 20), None, "size"),
        (sim_pb2.TouchRequest(access=READ, tid=999_999), grpc.StatusCode.NOT_FOUND, "tid"),
    ],
)
async def test_bad_sim_input(
    daemon: Daemon,
    request_: sim_pb2.SpawnProcessRequest | sim_pb2.TouchRequest,
    code: grpc.StatusCode | None,
    field: str,
) -> None:
    pid = (await daemon.sim.SpawnProcess(sim_pb2.SpawnProcessRequest())).pid
    before = await daemon.broker.GetSlotMap(broker_pb2.GetSlotMapRequest())
    call: Awaitable[object]
    if isinstance(request_, sim_pb2.TouchRequest):
        request_.pid = pid
        call = daemon.sim.Touch(request_)
    else:
        call = daemon.sim.SpawnProcess(request_)
    await expect_error(call, code or grpc.StatusCode.INVALID_ARGUMENT, field)
    assert await daemon.broker.GetSlotMap(broker_pb2.GetSlotMapRequest()) == before


async def test_sim_service_needs_a_simulated_machine(tmp_path: Path) -> None:
    # The machine a native build would give: a mechanism, but no sim to drive.
    native_like = dataclasses.replace(build_machine("sim"), sim=None)
    async with running_daemon(tmp_path, built=native_like) as d:
        sim = d.sim
        for call in (
            sim.SpawnProcess(sim_pb2.SpawnProcessRequest()),
            sim.SpawnThread(sim_pb2.SpawnThreadRequest(pid=1)),
            sim.EndThread(sim_pb2.EndThreadRequest(tid=1)),
            sim.EndProcess(sim_pb2.EndProcessRequest(pid=1)),
            sim.Touch(sim_pb2.TouchRequest(pid=1, access=WRITE)),
        ):
            err = await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION)
            assert "--machine sim" in (err.details() or "")


async def test_hit_runs_only_for_a_stream_that_asks(daemon: Daemon) -> None:
    """Issue 11 item 6: five writes of one thread at one place are one HitRun event to a
    stream that set hit_runs, and five Hit events to one that did not (the Node client,
    grpcurl, an older client)."""
    b, sim = daemon.broker, daemon.sim
    pid = (await sim.SpawnProcess(sim_pb2.SpawnProcessRequest())).pid
    token = await _session(daemon, "runs")
    req = broker_pb2.SetBreakpointRequest(spec=spec(pid=pid, address=0x4000, length=8))
    bid = (await b.SetBreakpoint(req, metadata=session_md(token))).breakpoint.id
    for value in range(1, 6):
        write = sim_pb2.TouchRequest(
            pid=pid, address=0x4000, access=WRITE, value=value.to_bytes(8, "little"), ip=0x401234
        )
        assert list((await sim.Touch(write)).breakpoint_ids) == [bid]

    async def read(hit_runs: bool) -> list[broker_pb2.Event]:
        request = broker_pb2.StreamEventsRequest(hit_runs=hit_runs)
        call = b.StreamEvents(request, metadata=session_md(token))
        hits: list[broker_pb2.Event] = []
        async for reply in call:
            hits += [e for e in reply.events if e.WhichOneof("kind") in ("hit", "hit_run")]
            if sum(len(e.hit_run.hit_counts) or 1 for e in hits) >= 5:
                break
        call.cancel()
        return hits

    plain = await read(hit_runs=False)
    assert [(e.seq, e.hit.value[0], e.hit.hit_count) for e in plain] == [
        (seq, seq - 1, seq - 1) for seq in range(2, 7)
    ]
    # The same events again (a replay from the start), asked as runs.
    (run_event,) = await read(hit_runs=True)
    run = run_event.hit_run
    assert (run_event.seq, run_event.breakpoint_id) == (2, bid)
    assert (run.shared.pid, run.shared.ip, run.shared.address) == (pid, 0x401234, 0x4000)
    assert list(run.hit_counts) == [1, 2, 3, 4, 5]
    assert run.values == b"".join(v.to_bytes(8, "little") for v in range(1, 6))
    assert run.value_length == 8
    assert [run_event.time.ToNanoseconds() + d for d in run.time_offsets_ns] == [
        e.time.ToNanoseconds() for e in plain
    ]
