"""hwbkpt._convert: models into protocol buffers and back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._args import make_spec
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import sim_pb2 as simpb

# --- to and from protocol buffers ------------------------------------------------------
specs = st.builds(
    m.BreakpointSpec,
    scope=st.sampled_from(m.Scope),
    address=st.integers(0, 2**64 - 1),
    length=st.integers(0, 64),
    access=st.sampled_from(m.Access),
    pid=st.integers(0, 2**32 - 1),
    tid=st.integers(0, 2**32 - 1),
    priority=st.none() | st.integers(0, 2**32 - 1),
    action=st.sampled_from(m.Action),
    filter=st.builds(
        m.Filter,
        changed_only=st.booleans(),
        equals=st.none() | st.binary(max_size=8),
        ignore_first=st.integers(0, 2**32 - 1),
        stop_after=st.integers(0, 2**32 - 1),
    ),
    symbol=st.text(max_size=10),
    nonstop=st.booleans(),
    call_chain=st.booleans(),
)


@given(specs)
def test_spec_round_trips(spec: m.BreakpointSpec) -> None:
    msg = pb.Breakpoint(id=1, spec=cv.spec_to_pb(spec))
    assert cv.breakpoint_from_pb(msg).spec == spec


def test_unset_priority_stays_unset_on_the_wire() -> None:
    assert not cv.spec_to_pb(make_spec(pid=1)).HasField("priority")
    assert cv.spec_to_pb(make_spec(pid=1, priority=0)).HasField("priority")


def test_breakpoint_from_pb() -> None:
    msg = pb.Breakpoint(
        id=4,
        session_name="ide",
        spec=pb.BreakpointSpec(scope=pb.SCOPE_PROCESS, pid=10, address=0x1000, length=8),
        state=pb.BREAKPOINT_STATE_PARTIAL,
        pending_reason=pb.PENDING_REASON_PRIORITY,
        installed_tids=[10],
        pending_tids=[11],
        chunks=[pb.Chunk(pool="dr", address=0x1000, length=8, access=pb.ACCESS_WRITE)],
        hit_count=5,
        reported_count=4,
        priority=25,
    )
    bp = cv.breakpoint_from_pb(msg)
    assert bp.state is m.BreakpointState.PARTIAL
    assert bp.pending_reason is m.PendingReason.PRIORITY
    assert (bp.installed_tids, bp.pending_tids) == ((10,), (11,))
    assert bp.chunks == (m.Chunk("dr", 0x1000, 8, m.Access.WRITE),)
    assert (bp.hit_count, bp.reported_count, bp.priority) == (5, 4, 25)


def _event(**kind: object) -> pb.Event:
    msg = pb.Event(seq=3, breakpoint_id=4, **kind)  # type: ignore[arg-type]
    msg.time.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    return msg


@pytest.mark.parametrize(
    ("msg", "payload"),
    [
        (
            _event(
                state=pb.StateChanged(
                    state=pb.BREAKPOINT_STATE_PENDING,
                    pending_reason=pb.PENDING_REASON_PRIORITY,
                    pending_tids=[9],
                )
            ),
            m.StateChanged(m.BreakpointState.PENDING, m.PendingReason.PRIORITY, (), (9,)),
        ),
        (
            _event(
                hit=pb.Hit(
                    pid=9,
                    tid=10,
                    cpu=-1,
                    ip=0x401000,
                    address=0x1000,
                    access=pb.ACCESS_WRITE,
                    value=b"\x2a",
                    old_value=b"\x07",
                    hit_count=2,
                    generation=5,
                    halted=True,
                    ip_symbol="main+0x4",
                    value_late=True,
                    call_chain=[pb.Frame(ip=0x401000, symbol="main+0x4"), pb.Frame(ip=0x400800)],
                )
            ),
            m.Hit(
                9,
                10,
                -1,
                0x401000,
                0x1000,
                m.Access.WRITE,
                b"\x2a",
                b"\x07",
                2,
                5,
                True,
                "main+0x4",
                True,
                (m.Frame(0x401000, "main+0x4"), m.Frame(0x400800, "")),
            ),
        ),
        (
            _event(
                displaced=pb.Displaced(tids=[9], by_breakpoint_id=7, by_session="t", by_priority=75)
            ),
            m.Displaced((9,), 7, "t", 75),
        ),
        (_event(restored=pb.Restored(tids=[9, 10])), m.Restored((9, 10))),
        (_event(removed=pb.Removed(reason=pb.REMOVED_REASON_LEASE)), m.Removed("lease")),
        (_event(removed=pb.Removed(reason=99)), m.Removed("99")),  # a newer broker's reason
        (_event(hits_dropped=pb.HitsDropped(count=12)), m.HitsDropped(12)),
        (
            _event(target_exited=pb.TargetExited(pid=9, tid=10, exit_code=3)),
            m.TargetExited(9, 10, 3),
        ),
        (
            _event(halt_timeout=pb.HaltTimeout(tid=10, halted_for=Duration(seconds=30, nanos=5))),
            m.HaltTimeout(10, 30.000000005),
        ),
        (_event(target_exec=pb.TargetExec(pid=9)), m.TargetExec(9)),
    ],
)
def test_every_event_kind(msg: pb.Event, payload: m.EventPayload) -> None:
    ev = cv.event_from_pb(msg)
    assert ev is not None
    assert (ev.seq, ev.breakpoint_id, ev.payload) == (3, 4, payload)
    assert ev.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_machine_from_pb() -> None:
    msg = pb.DescribeMachineResponse(
        machine=pb.MACHINE_KIND_SIM,
        layout="sim:arm64",
        arch="arm64",
        pools=[
            pb.Pool(name="exec", slots=6, accesses=[pb.ACCESS_EXEC]),
            pb.Pool(name="data", slots=4, accesses=[pb.ACCESS_WRITE, pb.ACCESS_READ]),
        ],
        mechanisms=[
            pb.Mechanism(
                name=pb.MECHANISM_NAME_PTRACE, available=False, reason="simulated machine"
            ),
            pb.Mechanism(name=pb.MECHANISM_NAME_PERF_KERNEL, available=True),
        ],
        arming=pb.ARMING_DEBUGREG,
        notes=["n"],
        version="0.1.0",
        max_region_length=8,
    )
    info = cv.machine_from_pb(msg)
    assert [(p.name, p.slots) for p in info.pools] == [("exec", 6), ("data", 4)]
    assert info.pools[1].accesses == (m.Access.WRITE, m.Access.READ)
    assert info.mechanisms == (
        m.Mechanism("ptrace", False, "simulated machine"),
        m.Mechanism("perf-kernel", True, ""),
    )
    assert (info.machine, info.kind, info.arming) == ("sim:arm64", "sim", "debugreg")
    assert (info.notes, info.max_region_length) == (("n",), 8)


def test_slot_map_free_and_shared_slots() -> None:
    msg = pb.GetSlotMapResponse(
        threads=[
            pb.ThreadSlots(
                pid=9,
                tid=9,
                generation=2,
                slots=[
                    pb.Slot(
                        pool="dr",
                        index=0,
                        chunk=pb.Chunk(pool="dr", address=0x10, length=8, access=pb.ACCESS_WRITE),
                        holders=[
                            pb.Holder(breakpoint_id=1, session_name="a", priority=25),
                            pb.Holder(breakpoint_id=2, session_name="b", priority=75),
                        ],
                    ),
                    pb.Slot(pool="dr", index=1),
                ],
            )
        ],
        waiting=[pb.Breakpoint(id=3, state=pb.BREAKPOINT_STATE_PENDING)],
    )
    sm = cv.slot_map_from_pb(msg)
    shared, free = sm.threads[0].slots
    assert [h.session_name for h in shared.holders] == ["a", "b"]
    assert free.chunk is None
    assert free.holders == ()
    assert sm.waiting[0].state is m.BreakpointState.PENDING


def test_sim_replies() -> None:
    assert cv.spawned_from_pb(simpb.SpawnProcessResponse(pid=5, tids=[5, 6])) == m.SpawnedProcess(
        5, (5, 6)
    )
    assert cv.touch_from_pb(simpb.TouchResponse(breakpoint_ids=[1, 2])) == m.TouchResult(
        (1, 2), False
    )


@given(
    seconds=st.integers(min_value=-62_135_596_800, max_value=253_402_300_799),
    nanos=st.integers(min_value=0, max_value=999_999_999),
)
def test_event_times_read_as_the_timestamp_says(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    assert cv.time_from_pb(ts) == ts.ToDatetime(tzinfo=UTC)
