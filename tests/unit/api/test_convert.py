"""hwbkptd.api.convert: protobuf <-> domain, and the checks made while reading client input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert
from hwbkptd.core.broker import (
    BreakpointSpec,
    BreakpointView,
    MachineDescription,
    SessionInfo,
    SlotMapView,
    SlotView,
    ThreadSlotsView,
)
from hwbkptd.core.errors import InvalidArgument, NotFound
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import (
    Access,
    Action,
    Chunk,
    Filter,
    PendingReason,
    RequestState,
    Scope,
)

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)

filters = st.builds(
    Filter,
    changed_only=st.booleans(),
    equals=st.none() | st.binary(max_size=32),
    ignore_first=U32,
    stop_after=U32,
)
specs = st.builds(
    BreakpointSpec,
    scope=st.sampled_from(Scope),
    address=U64,
    length=U32,
    access=st.sampled_from(Access),
    pid=U32,
    tid=U32,
    priority=st.none() | st.integers(0, 100),
    action=st.sampled_from(Action),
    filter=filters,
    symbol=st.text(max_size=20),
    nonstop=st.booleans(),
    call_chain=st.booleans(),
)


@given(specs)
def test_spec_round_trips(spec: BreakpointSpec) -> None:
    wire = convert.spec_to_proto(spec).SerializeToString()
    assert convert.spec_from_proto(broker_pb2.BreakpointSpec.FromString(wire)) == spec


def test_filter_keeps_empty_equals_apart_from_unset() -> None:
    assert convert.filter_from_proto(broker_pb2.Filter()).equals is None
    assert convert.filter_from_proto(broker_pb2.Filter(equals=b"")).equals == b""


def _spec(**fields: int) -> broker_pb2.BreakpointSpec:
    base = broker_pb2.BreakpointSpec(
        scope=broker_pb2.SCOPE_PROCESS,
        pid=1,
        address=0x1000,
        length=4,
        access=broker_pb2.ACCESS_WRITE,
    )
    for name, value in fields.items():
        setattr(base, name, value)
    return base


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"scope": 0}, "spec.scope"),
        ({"scope": 99}, "spec.scope"),
        ({"access": 0}, "spec.access"),
        ({"access": 42}, "spec.access"),
        ({"action": 7}, "spec.action"),
        ({"priority": 101}, "spec.priority"),
        ({"priority": 2**32 - 1}, "spec.priority"),
    ],
)
def test_bad_spec_names_the_field(fields: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.spec_from_proto(_spec(**fields))
    assert info.value.field == field
    assert info.value.reason


def test_unset_action_is_notify_and_unset_priority_is_none() -> None:
    spec = convert.spec_from_proto(_spec())
    assert spec.action is Action.NOTIFY
    assert spec.priority is None
    assert convert.spec_from_proto(_spec(priority=0)).priority == 0


def test_action_unset_on_modify_means_unchanged() -> None:
    assert convert.action_from_proto(0, "action", unset=None) is None
    assert convert.action_from_proto(2, "action", unset=None) is Action.HALT


def test_empty_token_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        convert.token_from_proto("")
    assert info.value.field == "token"
    assert convert.token_from_proto("abc") == "abc"


@pytest.mark.parametrize("value", [0, 4, 77])
def test_sim_access_is_one_concrete_kind(value: int) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.sim_access_from_proto(value)
    assert info.value.field == "access"


def test_sim_access_accepts_write_read_exec() -> None:
    assert convert.sim_access_from_proto(broker_pb2.ACCESS_WRITE) is Access.WRITE
    assert convert.sim_access_from_proto(broker_pb2.ACCESS_READ) is Access.READ
    assert convert.sim_access_from_proto(broker_pb2.ACCESS_EXEC) is Access.EXEC


CHUNK = Chunk("dr", 0x1000, 4, Access.WRITE)
SPEC = BreakpointSpec(Scope.PROCESS, 0x1000, 4, Access.WRITE, pid=7, priority=75)
VIEW = BreakpointView(
    id=3,
    session_name="ide",
    spec=SPEC,
    state=RequestState.PARTIAL,
    reason=PendingReason.PRIORITY,
    installed_tids=(7,),
    pending_tids=(8,),
    chunks=(CHUNK,),
    hit_count=5,
    reported_count=4,
    priority=75,
)


def test_breakpoint_view() -> None:
    msg = convert.breakpoint_to_proto(VIEW)
    assert msg.id == 3
    assert msg.session_name == "ide"
    assert msg.state == broker_pb2.BREAKPOINT_STATE_PARTIAL
    assert msg.pending_reason == broker_pb2.PENDING_REASON_PRIORITY
    assert list(msg.installed_tids) == [7]
    assert list(msg.pending_tids) == [8]
    assert msg.chunks[0] == broker_pb2.Chunk(
        pool="dr", address=0x1000, length=4, access=broker_pb2.ACCESS_WRITE
    )
    assert (msg.hit_count, msg.reported_count, msg.priority) == (5, 4, 75)
    assert convert.spec_from_proto(msg.spec) == SPEC


def test_no_pending_reason_is_unspecified() -> None:
    view = dataclasses.replace(VIEW, reason=PendingReason.NONE)
    assert convert.breakpoint_to_proto(view).pending_reason == 0


def test_machine_description() -> None:
    desc = MachineDescription(
        machine="sim:arm64",
        arch="arm64",
        pools={"exec": 6, "data": 4},
        pool_accesses={"exec": (Access.EXEC,), "data": (Access.WRITE, Access.READ)},
        mechanisms=(MechanismInfo("sim", True), MechanismInfo("ptrace", False, "not built")),
        arming="",
        notes=("a note",),
        max_region_length=8,
    )
    msg = convert.machine_to_proto(desc)
    assert (msg.machine, msg.layout, msg.arch, msg.version, msg.max_region_length) == (
        broker_pb2.MACHINE_KIND_SIM,
        "sim:arm64",
        "arm64",
        "0.1.0",
        8,
    )
    assert [(p.name, p.slots, list(p.accesses)) for p in msg.pools] == [
        ("exec", 6, [broker_pb2.ACCESS_EXEC]),
        ("data", 4, [broker_pb2.ACCESS_WRITE, broker_pb2.ACCESS_READ]),
    ]
    assert [(m.name, m.available, m.reason) for m in msg.mechanisms] == [
        (broker_pb2.MECHANISM_NAME_SIM, True, ""),
        (broker_pb2.MECHANISM_NAME_PTRACE, False, "not built"),
    ]
    assert list(msg.notes) == ["a note"]


def test_slot_map() -> None:
    view = SlotMapView(
        threads=(
            ThreadSlotsView(
                pid=7,
                tid=7,
                generation=3,
                slots=(
                    SlotView("dr", 0, CHUNK, ((3, "ide", 25), (4, "tracer", 25))),
                    SlotView("dr", 1, None, ()),
                    SlotView("dr", 2, None, (), external=True),
                ),
                halted=True,
            ),
        ),
        waiting=(VIEW,),
    )
    msg = convert.slot_map_to_proto(view)
    thread = msg.threads[0]
    assert (thread.pid, thread.tid, thread.generation, thread.halted) == (7, 7, 3, True)
    held, free, external = thread.slots
    assert held.HasField("chunk")
    assert held.chunk.address == 0x1000
    assert [(h.breakpoint_id, h.session_name, h.priority) for h in held.holders] == [
        (3, "ide", 25),
        (4, "tracer", 25),
    ]
    assert not free.HasField("chunk")
    assert not free.holders
    assert external.external
    assert [b.id for b in msg.waiting] == [3]


def test_session_responses() -> None:
    info = SessionInfo("s1", "ide", "secret", 0.4, 9)
    opened = convert.session_to_open_response(info)
    # A Duration carries the lease exactly; whole seconds rounded 0.4 s up to 1.
    assert (opened.session_id, opened.token) == ("s1", "secret")
    assert opened.lease.ToMilliseconds() == 400
    resumed = convert.session_to_resume_response(info)
    assert (resumed.session_id, resumed.name, resumed.last_seq) == ("s1", "ide", 9)
