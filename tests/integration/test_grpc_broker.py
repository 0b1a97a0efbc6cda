"""hwbkptd.api.broker_service over real gRPC on a Unix socket, against the real broker and sim."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import structlog
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_checks import Daemon, EventReader, expect_error, running_daemon, spec, violations
from session_metadata import session_md

from hwbkpt.v1 import broker_pb2, sim_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
KERNEL_ADDRESS = 0xFFFF_FFFF_8100_0000
NON_CANONICAL = 0x0000_8000_0000_0000


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path) as d:
        yield d


async def _open(d: Daemon, name: str) -> str:
    reply = await d.broker.OpenSession(broker_pb2.OpenSessionRequest(name=name))
    assert reply.session_id
    assert reply.token
    return reply.token


async def test_every_rpc(daemon: Daemon) -> None:
    b, sim = daemon.broker, daemon.sim
    machine = await b.DescribeMachine(broker_pb2.DescribeMachineRequest())
    assert (machine.machine, machine.layout, machine.arch) == (
        broker_pb2.MACHINE_KIND_SIM,
        "sim",
        "x86_64",
    )
    assert machine.arming == broker_pb2.ARMING_SIMULATED
    assert [(p.name, p.slots) for p in machine.pools] == [("dr", 4)]
    assert machine.version

    lease = Duration(seconds=30)
    opened = await b.OpenSession(broker_pb2.OpenSessionRequest(name="ide", lease=lease))
    token = opened.token
    assert opened.lease == lease
    resumed = await b.ResumeSession(broker_pb2.ResumeSessionRequest(), metadata=session_md(token))
    assert (resumed.session_id, resumed.name) == (opened.session_id, "ide")
    events = EventReader(
        b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
    )

    proc = await sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=2))
    pid = proc.pid
    assert proc.tids[0] == pid
    assert len(proc.tids) == 2

    watch = spec(pid=pid, address=0x1000, length=4)
    bp = (
        await b.SetBreakpoint(
            broker_pb2.SetBreakpointRequest(spec=watch), metadata=session_md(token)
        )
    ).breakpoint
    assert bp.id
    assert bp.state == broker_pb2.BREAKPOINT_STATE_INSTALLED
    assert bp.session_name == "ide"
    assert bp.priority == 25
    assert sorted(bp.installed_tids) == sorted(proc.tids)
    assert [(c.pool, c.address, c.length) for c in bp.chunks] == [("dr", 0x1000, 4)]

    listed = await b.ListBreakpoints(
        broker_pb2.ListBreakpointsRequest(), metadata=session_md(token)
    )
    assert [x.id for x in listed.breakpoints] == [bp.id]

    modified = await b.ModifyBreakpoint(
        broker_pb2.ModifyBreakpointRequest(breakpoint_id=bp.id, priority=50),
        metadata=session_md(token),
    )
    assert modified.breakpoint.priority == 50

    slots = await b.GetSlotMap(broker_pb2.GetSlotMapRequest(pid=pid))
    held = [(t.tid, [h.breakpoint_id for h in s.holders]) for t in slots.threads for s in t.slots]
    assert sorted((tid, ids) for tid, ids in held if ids) == sorted(
        (tid, [bp.id]) for tid in proc.tids
    )

    touched = await sim.Touch(
        sim_pb2.TouchRequest(
            pid=pid, address=0x1000, access=broker_pb2.ACCESS_WRITE, value=b"\x07\0\0\0"
        )
    )
    assert list(touched.breakpoint_ids) == [bp.id]
    assert not touched.halted
    hit = await events.next("hit")
    assert hit.breakpoint_id == bp.id
    assert hit.hit.value == b"\x07\0\0\0"
    assert hit.hit.old_value == b"\0\0\0\0"
    assert hit.hit.pid == pid

    none_halted = await b.ResumeThreads(
        broker_pb2.ResumeThreadsRequest(), metadata=session_md(token)
    )
    assert list(none_halted.resumed_tids) == []

    for call in (
        b.AttachProcess(broker_pb2.AttachProcessRequest(pid=pid), metadata=session_md(token)),
        b.LaunchProcess(
            broker_pb2.LaunchProcessRequest(argv=["/bin/true"]), metadata=session_md(token)
        ),
        b.ReleaseProcess(broker_pb2.ReleaseProcessRequest(pid=pid), metadata=session_md(token)),
        b.DetachProcess(broker_pb2.DetachProcessRequest(pid=pid), metadata=session_md(token)),
    ):
        await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION)
    await expect_error(
        b.DetachProcess(broker_pb2.DetachProcessRequest(pid=999_999), metadata=session_md(token)),
        NOT_FOUND,
        "pid",
    )

    await b.RemoveBreakpoint(
        broker_pb2.RemoveBreakpointRequest(breakpoint_id=bp.id), metadata=session_md(token)
    )
    removed = await events.next("removed")
    assert removed.breakpoint_id == bp.id
    listed = await b.ListBreakpoints(
        broker_pb2.ListBreakpointsRequest(), metadata=session_md(token)
    )
    assert list(listed.breakpoints) == []

    await b.CloseSession(broker_pb2.CloseSessionRequest(), metadata=session_md(token))
    # Issue 12: the stream says its session was closed (not OK and silent).
    assert await events.end() == grpc.StatusCode.FAILED_PRECONDITION
    assert await events.call.details() == "the session was closed"
    await expect_error(
        b.ListBreakpoints(broker_pb2.ListBreakpointsRequest(), metadata=session_md(token)),
        NOT_FOUND,
        "token",
    )


async def test_halt_and_resume(daemon: Daemon) -> None:
    b, sim = daemon.broker, daemon.sim
    token = await _open(daemon, "halter")
    pid = (await sim.SpawnProcess(sim_pb2.SpawnProcessRequest())).pid
    watch = spec(pid=pid, action=broker_pb2.ACTION_HALT)
    bp = (
        await b.SetBreakpoint(
            broker_pb2.SetBreakpointRequest(spec=watch), metadata=session_md(token)
        )
    ).breakpoint
    touched = await sim.Touch(
        sim_pb2.TouchRequest(pid=pid, address=0x1000, access=broker_pb2.ACCESS_WRITE, value=b"1234")
    )
    assert list(touched.breakpoint_ids) == [bp.id]
    assert touched.halted
    resumed = await b.ResumeThreads(broker_pb2.ResumeThreadsRequest(), metadata=session_md(token))
    assert list(resumed.resumed_tids) == [pid]


async def test_resume_threads_stream_answers_each_request_in_order(daemon: Daemon) -> None:
    # One long-lived stream: each request gets its answer, a refusal is an answer with
    # the status ResumeThreads would fail with, and the stream goes on after it.
    b, sim = daemon.broker, daemon.sim
    token = await _open(daemon, "fast-halter")
    pid = (await sim.SpawnProcess(sim_pb2.SpawnProcessRequest())).pid
    watch = spec(pid=pid, action=broker_pb2.ACTION_HALT)
    await b.SetBreakpoint(broker_pb2.SetBreakpointRequest(spec=watch), metadata=session_md(token))
    touch = sim_pb2.TouchRequest(
        pid=pid, address=0x1000, access=broker_pb2.ACCESS_WRITE, value=b"1234"
    )
    call = b.ResumeThreadsStream(metadata=session_md(token))

    async def ask(request: broker_pb2.ResumeThreadsStreamRequest, on: Any = call) -> Any:
        await on.write(request)
        return await on.read()

    assert (await sim.Touch(touch)).halted
    answer = await ask(broker_pb2.ResumeThreadsStreamRequest(tids=[pid]))
    assert (list(answer.resumed_tids), answer.error_status) == ([pid], b"")
    # The thread runs again: resuming it a second time is refused, precisely.
    refused = await ask(broker_pb2.ResumeThreadsStreamRequest(tids=[pid]))
    assert list(refused.resumed_tids) == []
    status = status_pb2.Status.FromString(refused.error_status)
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert f"thread {pid} is not halted" in status.message
    # A stream naming no live session answers each request with NOT_FOUND.
    stranger = b.ResumeThreadsStream(metadata=session_md("nope"))
    unknown = await ask(broker_pb2.ResumeThreadsStreamRequest(), stranger)
    await stranger.done_writing()
    status = status_pb2.Status.FromString(unknown.error_status)
    assert status.code == NOT_FOUND.value[0]
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["token"]
    # Still the same stream; no tids: every thread the session holds.
    assert (await sim.Touch(touch)).halted
    answer = await ask(broker_pb2.ResumeThreadsStreamRequest())
    assert list(answer.resumed_tids) == [pid]
    slots = await b.GetSlotMap(broker_pb2.GetSlotMapRequest(pid=pid))
    assert not any(t.halted for t in slots.threads)
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK


async def test_event_stream_replays_after_reconnect(daemon: Daemon) -> None:
    b = daemon.broker
    token = await _open(daemon, "replayer")
    pid = (await daemon.sim.SpawnProcess(sim_pb2.SpawnProcessRequest())).pid
    first = EventReader(
        b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
    )
    await b.SetBreakpoint(
        broker_pb2.SetBreakpointRequest(spec=spec(pid=pid)), metadata=session_md(token)
    )
    seen = await first.next()
    await first.close()  # the client cancels its stream: the handler must end cleanly
    again = EventReader(
        b.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
    )
    replayed = await again.next()
    assert replayed.seq == seen.seq
    await again.close()


# --- bad input: each gets its documented status and field, and changes nothing -------


@dataclass
class World:
    d: Daemon
    a: str
    b: str
    pid: int
    a_bp: int


Case = Callable[[World], Awaitable[object]]


def _set(token: str, **fields: object) -> Case:
    def call(w: World) -> Awaitable[object]:
        full = {"pid": w.pid, **fields}
        return w.d.broker.SetBreakpoint(
            broker_pb2.SetBreakpointRequest(spec=spec(**full)),
            metadata=session_md(getattr(w, token)),
        )

    return call


def _modify(token: str, bp: str, **fields: Any) -> Case:
    def call(w: World) -> Awaitable[object]:
        bp_id = w.a_bp if bp == "a" else 999_999
        return w.d.broker.ModifyBreakpoint(
            broker_pb2.ModifyBreakpointRequest(breakpoint_id=bp_id, **fields),
            metadata=session_md(getattr(w, token)),
        )

    return call


def _remove(token: str, bp: str) -> Case:
    def call(w: World) -> Awaitable[object]:
        bp_id = w.a_bp if bp == "a" else 999_999
        return w.d.broker.RemoveBreakpoint(
            broker_pb2.RemoveBreakpointRequest(breakpoint_id=bp_id),
            metadata=session_md(getattr(w, token)),
        )

    return call


def _name(name: str) -> Case:
    return lambda w: w.d.broker.OpenSession(broker_pb2.OpenSessionRequest(name=name))


def _set_with_token(token: str) -> Case:
    return lambda w: w.d.broker.SetBreakpoint(
        broker_pb2.SetBreakpointRequest(spec=spec(pid=w.pid)), metadata=session_md(token)
    )


def _touch(**fields: Any) -> Case:
    return lambda w: w.d.sim.Touch(sim_pb2.TouchRequest(pid=w.pid, address=0x1000, **fields))


EXEC = broker_pb2.ACCESS_EXEC
U = broker_pb2.Access.ValueType
S = broker_pb2.Scope.ValueType
A = broker_pb2.Action.ValueType

BAD: dict[str, tuple[Case, grpc.StatusCode, str | None]] = {
    "zero length": (_set("a", length=0), INVALID, "spec.length"),
    "oversized length": (_set("a", length=64), INVALID, "spec.length"),
    "unsplittable region": (_set("a", address=0x1001, length=31), INVALID, "spec.length"),
    "exec length 4 on x86": (_set("a", access=EXEC, length=4), INVALID, "spec.length"),
    "kernel address in user scope": (_set("a", address=KERNEL_ADDRESS), INVALID, "spec.address"),
    "user address in kernel scope": (
        _set("a", scope=broker_pb2.SCOPE_KERNEL, pid=0, address=0x1000),
        INVALID,
        "spec.address",
    ),
    "non-canonical address": (_set("a", address=NON_CANONICAL), INVALID, "spec.address"),
    "unknown pid": (_set("a", pid=999_999), NOT_FOUND, "spec.pid"),
    "unknown tid": (
        _set("a", scope=broker_pb2.SCOPE_THREAD, tid=999_999),
        NOT_FOUND,
        "spec.tid",
    ),
    "unknown session": (_set_with_token("no-such-token"), NOT_FOUND, "token"),
    "empty token": (_set_with_token(""), NOT_FOUND, "token"),
    "unknown request id (remove)": (_remove("a", "none"), NOT_FOUND, "breakpoint_id"),
    "unknown request id (modify)": (
        _modify("a", "none", priority=30),
        NOT_FOUND,
        "breakpoint_id",
    ),
    "another session's request (remove)": (
        _remove("b", "a"),
        grpc.StatusCode.PERMISSION_DENIED,
        "breakpoint_id",
    ),
    "another session's request (modify)": (
        _modify("b", "a", priority=90),
        grpc.StatusCode.PERMISSION_DENIED,
        "breakpoint_id",
    ),
    "priority 101": (_set("a", priority=101), INVALID, "spec.priority"),
    "modify priority 101": (_modify("a", "a", priority=101), INVALID, "priority"),
    "empty name": (_name(""), INVALID, "name"),
    "10 MB name": (_name("n" * 10_000_000), INVALID, "name"),
    "unknown scope": (_set("a", scope=S(9)), INVALID, "spec.scope"),
    "unspecified scope": (_set("a", scope=S(0)), INVALID, "spec.scope"),
    "unknown access": (_set("a", access=U(9)), INVALID, "spec.access"),
    "unspecified access": (_set("a", access=U(0)), INVALID, "spec.access"),
    "unknown action": (_set("a", action=A(9)), INVALID, "spec.action"),
    "modify unknown action": (_modify("a", "a", action=A(9)), INVALID, "action"),
    "equals of the wrong length": (
        _set("a", filter=broker_pb2.Filter(equals=b"\x01")),
        INVALID,
        "spec.filter.equals",
    ),
    "touch with unknown access": (_touch(access=U(9)), INVALID, "access"),
    "touch of an unknown pid": (
        lambda w: w.d.sim.Touch(
            sim_pb2.TouchRequest(pid=999_999, address=0x1000, access=broker_pb2.ACCESS_READ)
        ),
        NOT_FOUND,
        "pid",
    ),
    "resume an unknown session": (
        lambda w: w.d.broker.ResumeSession(
            broker_pb2.ResumeSessionRequest(), metadata=session_md("nope")
        ),
        NOT_FOUND,
        "token",
    ),
}


async def _snapshot(w: World) -> tuple[bytes, ...]:
    b = w.d.broker
    a = await b.ListBreakpoints(broker_pb2.ListBreakpointsRequest(), metadata=session_md(w.a))
    other = await b.ListBreakpoints(broker_pb2.ListBreakpointsRequest(), metadata=session_md(w.b))
    slots = await b.GetSlotMap(broker_pb2.GetSlotMapRequest())
    return tuple(m.SerializeToString(deterministic=True) for m in (a, other, slots))


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_input(daemon: Daemon, case: str) -> None:
    call, code, field = BAD[case]
    a = await _open(daemon, "a")
    b = await _open(daemon, "b")
    pid = (await daemon.sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=2))).pid
    set_a = broker_pb2.SetBreakpointRequest(spec=spec(pid=pid, address=0x2000))
    a_bp = (await daemon.broker.SetBreakpoint(set_a, metadata=session_md(a))).breakpoint.id
    world = World(daemon, a, b, pid, a_bp)
    before = await _snapshot(world)
    await expect_error(call(world), code, field)
    assert await _snapshot(world) == before


@pytest.mark.parametrize("token", ["", "no-such-token"])
async def test_stream_of_an_unknown_session(daemon: Daemon, token: str) -> None:
    reader = EventReader(
        daemon.broker.StreamEvents(broker_pb2.StreamEventsRequest(), metadata=session_md(token))
    )
    assert await reader.end() == NOT_FOUND
    assert reader.error is not None
    assert violations(reader.error) == ["token"]


def _random_spec(rng: random.Random, pid: int, tids: list[int]) -> broker_pb2.BreakpointSpec:
    edge64 = [0, 1, 0x1000, 0x1001, NON_CANONICAL, KERNEL_ADDRESS, 2**47 - 1, 2**64 - 1]
    msg = broker_pb2.BreakpointSpec(
        scope=S(rng.choice([0, 1, 2, 3, 3, 2, 7, 2**31 - 1])),
        pid=rng.choice([0, pid, pid, 1, 2**32 - 1]),
        tid=rng.choice([0, *tids, 2**32 - 1]),
        address=rng.choice([*edge64, rng.randrange(2**64), rng.randrange(0x10000)]),
        length=rng.choice([0, 1, 2, 3, 4, 8, 16, 31, 32, 33, 2**32 - 1]),
        access=U(rng.choice([0, 1, 2, 3, 4, 5, -1])),
        action=A(rng.choice([0, 1, 2, 3])),
        symbol=rng.choice(["", "", "main", "x" * 5000, "\u00e9+0x10"]),
        nonstop=rng.random() < 0.2,
    )
    if rng.random() < 0.5:
        msg.priority = rng.choice([0, 25, 100, 101, 2**32 - 1])
    if rng.random() < 0.3:
        msg.filter.CopyFrom(
            broker_pb2.Filter(
                changed_only=rng.random() < 0.5,
                equals=rng.choice([b"", b"\x01", b"\x01\x02\x03\x04", b"\0" * 64]),
                ignore_first=rng.choice([0, 1, 2**32 - 1]),
                stop_after=rng.choice([0, 1, 2**32 - 1]),
            )
        )
    return msg


DOCUMENTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


async def test_random_input_never_internal(daemon: Daemon) -> None:
    """Whatever the wire allows gets OK or a documented status, never UNKNOWN or INTERNAL."""
    rng = random.Random(20070223)
    b = daemon.broker
    token = await _open(daemon, "fuzz")
    proc = await daemon.sim.SpawnProcess(sim_pb2.SpawnProcessRequest(threads=2))
    tids = list(proc.tids)
    outcomes: dict[str, int] = {}
    with structlog.testing.capture_logs() as logs:
        for _ in range(300):
            calls: list[Awaitable[object]] = [
                b.SetBreakpoint(
                    broker_pb2.SetBreakpointRequest(
                        spec=_random_spec(rng, proc.pid, tids),
                    ),
                    metadata=session_md(rng.choice([token, token, "", "bogus"])),
                ),
                b.ModifyBreakpoint(
                    broker_pb2.ModifyBreakpointRequest(
                        breakpoint_id=rng.choice([0, 1, 2, 3, 2**64 - 1]),
                        priority=rng.choice([0, 50, 100, 101]),
                        action=A(rng.choice([0, 1, 2, 9])),
                    ),
                    metadata=session_md(token),
                ),
                daemon.sim.Touch(
                    sim_pb2.TouchRequest(
                        pid=rng.choice([proc.pid, 0, 7]),
                        tid=rng.choice([0, *tids, 5]),
                        address=rng.choice([0x1000, 0x1002, KERNEL_ADDRESS, 2**64 - 1]),
                        access=U(rng.choice([0, 1, 2, 3, 4, 11])),
                        value=rng.choice([b"", b"\x05", b"\x01\x02\x03\x04"]),
                        size=rng.choice([0, 1, 4, 5000]),
                    )
                ),
            ]
            for call in calls:
                try:
                    await call
                    code, details = grpc.StatusCode.OK, ""
                except grpc.aio.AioRpcError as err:
                    code, details = err.code(), err.details() or ""
                assert code is grpc.StatusCode.OK or code in DOCUMENTED, f"{code}: {details}"
                outcomes[code.name] = outcomes.get(code.name, 0) + 1
            if rng.random() < 0.1:
                await b.ResumeThreads(broker_pb2.ResumeThreadsRequest(), metadata=session_md(token))
    assert not [e for e in logs if e["event"] == "rpc failed unexpectedly"]
    assert outcomes.get("OK", 0) >= 5  # the sweep also exercised the happy path
    assert outcomes.get("INVALID_ARGUMENT", 0) > 10
