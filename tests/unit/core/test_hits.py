"""Per-request hit bookkeeping: counts, before/after values, read emulation."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.core.hits import HitState, count_hit, count_run, old_value_at, value_at
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access, Action, Filter, Request, Scope


def watch(access: Access, action: Action, flt: Filter, *, call_chain: bool = False) -> Request:
    """The request record count_hit reads the settings from (issue 10: one owner)."""
    return Request(
        id=1,
        seq=1,
        session_id="s",
        session_name="s",
        scope=Scope.PROCESS,
        pid=10,
        tid=0,
        address=0x1000,
        length=4,
        access=access,
        priority=50,
        chunks=(),
        action=action,
        filter=flt,
        call_chain=call_chain,
    )


def report(*values: bytes, access: Access | None = Access.WRITE, halted: bool = False) -> HitReport:
    return HitReport(
        pid=10,
        tid=11,
        pool="dr",
        index=0,
        generation=3,
        ip=0x401000,
        address=0x1000,
        time_ns=5,
        cpu=1,
        access=access,
        values=values,
        halted=halted,
        values_late=True,
        ip_symbol="main+0x4",
    )


def test_value_at_lines_up_with_regions() -> None:
    r = report(b"a", b"b")
    assert (value_at(r, 0), value_at(r, 1), value_at(r, 2), value_at(r, -1)) == (
        b"a",
        b"b",
        b"",
        b"",
    )


def test_old_value_is_the_last_known_value() -> None:
    request = watch(Access.WRITE, Action.NOTIFY, Filter())
    state = HitState(last_value=b"\x00")
    first = count_hit(request, state, report(b"\x01"), b"\x01")
    second = count_hit(request, state, report(b"\x02"), b"\x02")
    assert first is not None
    assert second is not None
    assert (first.old_value, first.value, first.hit_count) == (b"\x00", b"\x01", 1)
    assert (second.old_value, second.value, second.hit_count) == (b"\x01", b"\x02", 2)
    assert (first.pid, first.tid, first.cpu, first.ip, first.generation) == (10, 11, 1, 0x401000, 3)
    assert first.value_late
    assert first.ip_symbol == "main+0x4"
    assert state.reported_count == 2


def test_filtered_hits_count_but_are_not_reported_and_still_move_the_value() -> None:
    request = watch(Access.WRITE, Action.NOTIFY, Filter(changed_only=True))
    state = HitState(last_value=b"\x01")
    assert count_hit(request, state, report(), b"\x01") is None
    assert (state.hit_count, state.reported_count, state.last_value) == (1, 0, b"\x01")
    hit = count_hit(request, state, report(), b"\x02")
    assert hit is not None
    assert hit.hit_count == 2


def test_item7_emulated_read_drops_writes_and_a_same_value_hit_is_read_or_write() -> None:
    request = watch(Access.READ, Action.NOTIFY, Filter())
    state = HitState(emulated_read=True, last_value=b"\x01")
    assert count_hit(request, state, report(access=Access.WRITE), b"\x05") is None
    # The hardware cannot tell: a changed value means a write.
    assert count_hit(request, state, report(access=None), b"\x06") is None
    # Unchanged: a read, or a store of the same value; no value comparison tells which.
    hit = count_hit(request, state, report(access=None), b"\x06")
    assert hit is not None
    assert hit.access is Access.READ_WRITE
    assert hit.old_value == b"\x06"
    assert state.hit_count == 1
    said = count_hit(request, state, report(b"\x06", access=Access.READ), b"\x06")
    assert said is not None
    assert said.access is Access.READ  # where the hardware says, it is believed


def test_item7_unsaid_access_comes_from_the_watch_or_the_value() -> None:
    def access(kind: Access, old: bytes, value: bytes, emulated: bool = False) -> Access | None:
        request = watch(kind, Action.NOTIFY, Filter())
        state = HitState(emulated_read=emulated, last_value=old)
        hit = count_hit(request, state, report(access=None), value)
        assert hit is not None
        return hit.access

    # A watch that triggers on one kind tells it (a read watch where reads are watchable).
    assert access(Access.WRITE, b"\x01", b"\x01") is Access.WRITE
    assert access(Access.EXEC, b"", b"") is Access.EXEC
    assert access(Access.READ, b"\x01", b"\x02") is Access.READ
    # Read/write: a change is a write; no change, or nothing known before, can be either.
    assert access(Access.READ_WRITE, b"\x01", b"\x02") is Access.WRITE
    assert access(Access.READ_WRITE, b"\x01", b"\x01") is Access.READ_WRITE
    assert access(Access.READ_WRITE, b"", b"\x01") is Access.READ_WRITE
    assert access(Access.READ, b"", b"\x01", emulated=True) is Access.READ_WRITE


def test_halted_only_for_halt_requests_and_stopped_reports_nothing() -> None:
    halt_req = watch(Access.WRITE, Action.HALT, Filter())
    halt = HitState()
    notify_req = watch(Access.WRITE, Action.NOTIFY, Filter())
    notify = HitState()
    h = count_hit(halt_req, halt, report(halted=True), b"")
    n = count_hit(notify_req, notify, report(halted=True), b"")
    assert h is not None
    assert h.halted
    assert n is not None
    assert not n.halted
    halt.stopped = True
    assert count_hit(halt_req, halt, report(halted=True), b"\x09") is None
    assert halt.last_value == b"\x09"


def test_call_chains_only_for_requests_that_asked() -> None:
    r = HitReport(
        pid=0,
        tid=0,
        pool="dr",
        index=0,
        generation=1,
        ip=0xFFFF_0008,
        address=0xFFFF_9000,
        time_ns=5,
        call_chain=(0xFFFF_0008, 0xFFFF_1010, 0xFFFF_2020),
        call_chain_symbols=("a+0x8", "b+0x10"),
    )
    asking = watch(Access.WRITE, Action.NOTIFY, Filter(), call_chain=True)
    asked = count_hit(asking, HitState(), r, b"")
    plain = count_hit(watch(Access.WRITE, Action.NOTIFY, Filter()), HitState(), r, b"")
    assert asked is not None
    assert plain is not None
    # A frame without a symbol keeps its address.
    assert asked.call_chain == ((0xFFFF_0008, "a+0x8"), (0xFFFF_1010, "b+0x10"), (0xFFFF_2020, ""))
    assert plain.call_chain == ()


# --- issue 11 item 6: a run of one slot's hits judged in one call -----------------------
_VALUE = st.sampled_from([b"\x01", b"\x02", b"\x03"])


@st.composite
def _reports(draw: st.DrawFn) -> HitReport:
    regions = draw(st.integers(0, 2))
    return HitReport(
        10, 11, "dr", 0, 3, draw(st.integers(1, 3)), 0x1000, draw(st.integers(0, 9)),
        draw(st.integers(-1, 3)),
        draw(st.sampled_from([None, Access.READ, Access.WRITE, Access.READ_WRITE])),
        tuple(draw(_VALUE) for _ in range(regions)), draw(st.booleans()), draw(st.booleans()),
        "main", draw(st.sampled_from([0, 12])), (), (), draw(st.sampled_from([0, 0, 2, -1])),
        draw(st.sampled_from([False, False, False, True])),
        tuple(draw(_VALUE) for _ in range(draw(st.integers(0, regions)))),
    )  # fmt: skip


@given(
    reports=st.lists(_reports(), max_size=30),
    access=st.sampled_from(list(Access)),
    action=st.sampled_from([Action.NOTIFY, Action.HALT]),
    flt=st.builds(
        Filter,
        changed_only=st.booleans(),
        equals=st.one_of(st.none(), _VALUE),
        ignore_first=st.integers(0, 3),
        stop_after=st.integers(0, 6),
    ),
    emulated=st.booleans(),
    stopped=st.booleans(),
    index=st.integers(0, 2),
)
def test_item6_count_run_decides_as_count_hit_per_report(
    reports: list[HitReport],
    access: Access,
    action: Action,
    flt: Filter,
    emulated: bool,
    stopped: bool,
    index: int,
) -> None:
    request = watch(access, action, flt)
    one = HitState(emulated_read=emulated, last_value=b"\x02", stopped=stopped)
    run = dataclasses.replace(one)
    expected = []
    taken = 0
    for r in reports:  # what routing does per report: count, then stop at stop_after
        taken += 1
        hit = count_hit(request, one, r, value_at(r, index), old_value_at(r, index))
        if hit is not None:
            expected.append((r, hit))
            if flt.stop_after and one.reported_count >= flt.stop_after:
                break
    got: list[tuple[HitReport, object]] = []
    assert count_run(request, run, reports, index, got) == taken
    assert got == expected
    assert run == one
