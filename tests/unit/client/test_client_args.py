"""hwbkpt._args: what a user writes, read into specs before anything is sent."""

from __future__ import annotations

import pytest

from hwbkpt import _args as args
from hwbkpt import models as m


# --- arguments -------------------------------------------------------------------------
def test_spec_defaults_for_data() -> None:
    spec = args.make_spec(pid=100, address=0x1000)
    assert spec.scope is m.Scope.PROCESS
    assert (spec.length, spec.access, spec.action) == (8, m.Access.WRITE, m.Action.NOTIFY)
    assert spec.priority is None
    assert spec.filter == m.Filter()


def test_spec_defaults_for_exec_leave_length_to_the_broker() -> None:
    assert args.make_spec(pid=100, address=0x401000, access="exec").length == 0


def test_scope_follows_the_target() -> None:
    assert args.make_spec(tid=7).scope is m.Scope.THREAD
    assert args.make_spec(pid=7, tid=8).scope is m.Scope.THREAD
    assert args.make_spec(scope="kernel", address=1).scope is m.Scope.KERNEL
    with pytest.raises(ValueError, match="scope"):
        args.make_spec(address=1)


@pytest.mark.parametrize(
    ("given_", "expected"),
    [(None, None), (0, 0), (101, 101), ("high", 75), ("LOW", 10), ("debugger", 50), ("60", 60)],
)
def test_priorities(given_: int | str | None, expected: int | None) -> None:
    assert args.parse_priority(given_) == expected


def test_unknown_priority_name_lists_the_presets() -> None:
    with pytest.raises(ValueError, match="low, normal, debugger, high"):
        args.parse_priority("urgent")


def test_access_spellings() -> None:
    assert args.parse_access("rw") is m.Access.READ_WRITE
    assert args.parse_access("read_write") is m.Access.READ_WRITE
    assert args.parse_access(m.Access.EXEC) is m.Access.EXEC
    with pytest.raises(ValueError, match="exec, write, read, rw"):
        args.parse_access("x")
    with pytest.raises(ValueError, match="notify or halt"):
        args.parse_action("pause")
    with pytest.raises(ValueError, match="kernel, process, thread"):
        args.parse_scope("cpu")


def test_values_are_little_endian() -> None:
    assert args.value_bytes(0x2A, 4) == b"\x2a\x00\x00\x00"
    assert args.value_bytes(1, 0) == (1).to_bytes(8, "little")
    assert args.value_bytes(-1, 2) == b"\xff\xff"
    assert args.value_bytes(b"\x01\x02", 8) == b"\x01\x02"
    with pytest.raises(ValueError, match="does not fit in 1 bytes"):
        args.value_bytes(256, 1)


def test_equals_filter_takes_the_request_length() -> None:
    spec = args.make_spec(
        pid=1, length=4, equals=7, stop_after=3, ignore_first=2, changed_only=True
    )
    assert spec.filter == m.Filter(True, b"\x07\x00\x00\x00", 2, 3)


def test_watch_is_the_shortcut_for_a_spec() -> None:
    assert args.watch_spec(0x1000, pid=100) == args.make_spec(pid=100, address=0x1000)
    assert args.watch_spec("jiffies", kernel=True, call_chain=True) == args.make_spec(
        scope="kernel", symbol="jiffies", call_chain=True
    )
    halted = args.watch_spec(0x1000, tid=7, halt=True, stop_after=3, access="rw", length=4)
    assert halted == m.BreakpointSpec(
        m.Scope.THREAD,
        address=0x1000,
        length=4,
        access=m.Access.READ_WRITE,
        tid=7,
        action=m.Action.HALT,
        filter=m.Filter(stop_after=3),
    )


def test_an_unknown_keyword_is_refused_as_python_refuses_it() -> None:
    with pytest.raises(TypeError, match=r"set_breakpoint\(\) got an unexpected keyword arg"):
        args.make_spec(pdi=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"watch\(\) got an unexpected keyword argument 'scope'"):
        args.watch_spec(0x1000, pid=1, scope="thread")  # type: ignore[call-arg]
