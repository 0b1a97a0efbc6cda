"""hwbkpt.models: integer views of values and event kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkpt import models as m


@given(st.binary(min_size=1, max_size=8))
def test_le_int_reads_little_endian(data: bytes) -> None:
    value = m.le_int(data)
    assert value is not None
    assert value.to_bytes(len(data), "little") == data


@pytest.mark.parametrize("data", [b"", bytes(9), bytes(32)])
def test_le_int_none_when_empty_or_long(data: bytes) -> None:
    assert m.le_int(data) is None


def _hit(value: bytes, old: bytes) -> m.Hit:
    return m.Hit(
        pid=1,
        tid=2,
        cpu=-1,
        ip=0x401000,
        address=0x1000,
        access=m.Access.WRITE,
        value=value,
        old_value=old,
        hit_count=1,
        generation=3,
    )


def test_hit_int_views() -> None:
    hit = _hit((42).to_bytes(8, "little"), (7).to_bytes(8, "little"))
    assert (hit.value_int, hit.old_value_int) == (42, 7)
    wide = _hit(bytes(range(16)), bytes(16))
    assert wide.value_int is None
    assert wide.value == bytes(range(16))


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (m.StateChanged(m.BreakpointState.PENDING, m.PendingReason.PRIORITY, (), (5,)), "state"),
        (_hit(b"\x01", b"\x00"), "hit"),
        (m.Displaced((5,), 9, "tracer", 75), "displaced"),
        (m.Restored((5,)), "restored"),
        (m.Removed("client"), "removed"),
        (m.HitsDropped(3), "hits_dropped"),
        (m.TargetExited(5, 5, 0), "target_exited"),
        (m.HaltTimeout(5, 30.0), "halt_timeout"),
        (m.TargetExec(5), "target_exec"),
    ],
)
def test_event_kind_names(payload: m.EventPayload, kind: str) -> None:
    ev = m.Event(seq=1, time=datetime.now(UTC), breakpoint_id=4, payload=payload)
    assert ev.kind == kind


def test_enums_have_the_command_line_spelling() -> None:
    assert [a.value for a in m.Access] == ["exec", "write", "read", "rw"]
    assert m.PRIORITY_PRESETS == {"low": 10, "normal": 25, "debugger": 50, "high": 75}
