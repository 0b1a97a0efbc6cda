"""Issue 15, item 1: the adapter's data breakpoints (hwbkpt.dap._watches): a replaced set
keeps what is asked for again, removes the rest first, and broker refusals become
unverified breakpoints with the reason."""

from __future__ import annotations

from typing import Any

from hwbkpt import models as m
from hwbkpt.dap._mapping import DataId, HitRule
from hwbkpt.dap._watches import Watches, build_spec, state_view
from hwbkpt.errors import HwbkptError


def _bp(bid: int, state: m.BreakpointState = m.BreakpointState.INSTALLED) -> m.Breakpoint:
    spec = m.BreakpointSpec(scope=m.Scope.PROCESS, pid=1, address=0x1000, length=8)
    return m.Breakpoint(bid, "s", spec, state, m.PendingReason.PRIORITY, (), (), (), 0, 0, 50)


class Broker:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.next_id = 100

    def set_one(self, req: dict[str, Any]) -> tuple[m.Breakpoint, DataId, HitRule]:
        spec, data, rule = build_spec(req, pid=1, priority=50, action=m.Action.HALT)
        if spec.address == 0xDEAD:
            raise HwbkptError("INVALID_ARGUMENT", "spec.address: not mapped")
        self.next_id += 1
        self.calls.append(f"set {req['dataId']}")
        return _bp(self.next_id), data, rule

    def remove(self, bid: int) -> None:
        self.calls.append(f"remove {bid}")


def test_item1_replace_keeps_removes_first_then_adds() -> None:
    broker, watches = Broker(), Watches()
    a, b = {"dataId": "addr:0x1000:8"}, {"dataId": "addr:0x2000:8", "accessType": "readWrite"}
    first = watches.replace([a, b], broker.set_one, broker.remove)
    assert [w.dap_id for w in first] == [1, 2]
    assert all(w.verified for w in first)
    c = {"dataId": "addr:0x3000:4", "hitCondition": "% 2"}
    second = watches.replace([b, c], broker.set_one, broker.remove)
    assert [w.dap_id for w in second] == [2, 3]
    assert second[1].rule == HitRule(every=2)
    assert broker.calls == [
        "set addr:0x1000:8",
        "set addr:0x2000:8",
        "remove 101",
        "set addr:0x3000:4",
    ]
    assert watches.by_broker(101) is None
    assert watches.by_broker(102) is second[0]


def test_item1_refusals_are_unverified_with_the_reason() -> None:
    broker, watches = Broker(), Watches()
    got = watches.replace(
        [{"dataId": "addr:0xdead:8"}, {"dataId": "addr:0x1000:8", "condition": "x > 1"}],
        broker.set_one,
        broker.remove,
    )
    assert [(w.verified, w.message) for w in got] == [
        (False, "INVALID_ARGUMENT: spec.address: not mapped"),
        (False, "condition: 'x > 1': expected 'changed', '== VALUE' or 'VALUE'"),
    ]
    assert broker.calls == []


def test_item1_update_reports_only_changes() -> None:
    broker, watches = Broker(), Watches()
    watches.replace([{"dataId": "addr:0x1000:8"}], broker.set_one, broker.remove)
    assert watches.update(101, True, "") is None
    changed = watches.update(101, False, "displaced")
    assert changed is not None
    assert changed.dap() == {"id": 1, "verified": False, "message": "displaced"}
    assert watches.update(999, False, "x") is None


def test_item1_state_view() -> None:
    assert state_view(m.BreakpointState.INSTALLED, m.PendingReason.NONE) == (True, "")
    assert state_view(m.BreakpointState.PENDING, m.PendingReason.PRIORITY) == (
        False,
        "pending: stronger requests hold the slots",
    )


def test_item1_build_spec_maps_filters() -> None:
    spec, data, rule = build_spec(
        {
            "dataId": "addr:0x40:2",
            "accessType": "read",
            "condition": "== 7",
            "hitCondition": "== 3",
        },
        pid=9,
        priority=50,
        action=m.Action.NOTIFY,
    )
    assert data == DataId(length=2, address=0x40)
    assert rule == HitRule(ignore_first=2, stop_after=1)
    assert (spec.pid, spec.address, spec.length, spec.access) == (9, 0x40, 2, m.Access.READ)
    assert spec.filter == m.Filter(equals=b"\x07\x00", ignore_first=2, stop_after=1)
    assert (spec.priority, spec.action, spec.scope) == (50, m.Action.NOTIFY, m.Scope.PROCESS)
