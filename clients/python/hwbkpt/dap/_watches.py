"""The adapter's data breakpoints: DAP ids, the broker's requests behind them, their state.

``setDataBreakpoints`` hands over the whole wanted set each time; ``Watches.replace`` keeps
the breakpoints asked for again unchanged (same DAP id, same broker request, same slot),
removes the others and sets the new ones. Broker events then change a breakpoint's
``verified`` and ``message``; each change is a DAP ``breakpoint`` event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwbkpt import models as m
from hwbkpt.dap._mapping import (
    DataId,
    HitRule,
    access_of,
    parse_data_id,
    parse_hit_condition,
    parse_value_condition,
)
from hwbkpt.errors import HwbkptError

__all__ = ["Watch", "WatchKey", "Watches", "build_spec", "state_view"]

WatchKey = tuple[str, str, str, str]


@dataclass(slots=True)
class Watch:
    key: WatchKey
    dap_id: int
    data: DataId | None
    #: The broker's request (0: the broker refused it, or it never got that far).
    broker_id: int
    rule: HitRule
    verified: bool
    message: str

    def dap(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.dap_id, "verified": self.verified}
        if self.message:
            out["message"] = self.message
        return out


def key_of(req: dict[str, Any]) -> WatchKey:
    return (
        str(req.get("dataId", "")),
        str(req.get("accessType") or "write"),
        str(req.get("condition") or ""),
        str(req.get("hitCondition") or ""),
    )


_PENDING_TEXT = {
    m.PendingReason.PRIORITY: "pending: stronger requests hold the slots",
    m.PendingReason.EXTERNAL: "pending: the kernel refused the slot (held outside the broker)",
    m.PendingReason.NO_THREADS: "pending: the process has no threads yet",
}


def state_view(state: m.BreakpointState, reason: m.PendingReason) -> tuple[bool, str]:
    """(verified, message) for a broker state."""
    if state in (m.BreakpointState.INSTALLED, m.BreakpointState.PARTIAL):
        return True, "" if state is m.BreakpointState.INSTALLED else "installed in some threads"
    if state is m.BreakpointState.REMOVED:
        return False, "removed by the broker"
    return False, _PENDING_TEXT.get(reason, "pending")


def build_spec(
    req: dict[str, Any], *, pid: int, priority: int, action: m.Action
) -> tuple[m.BreakpointSpec, DataId, HitRule]:
    """A DAP DataBreakpoint as the broker's request; ValueError names the faulty field."""
    data = parse_data_id(str(req.get("dataId", "")))
    access = access_of(req.get("accessType"))
    value = parse_value_condition(req.get("condition"), data.length)
    rule = parse_hit_condition(req.get("hitCondition"))
    spec = m.BreakpointSpec(
        scope=m.Scope.PROCESS,
        pid=pid,
        address=data.address,
        symbol=data.symbol,
        length=data.length,
        access=access,
        priority=priority,
        action=action,
        filter=m.Filter(
            changed_only=value.changed_only,
            equals=value.equals,
            ignore_first=rule.ignore_first,
            stop_after=rule.stop_after,
        ),
    )
    return spec, data, rule


class Watches:
    """The data breakpoints of one adapter; safe to use from the request and event threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_id = 0
        self._by_key: dict[WatchKey, Watch] = {}
        self._by_broker: dict[int, Watch] = {}

    def by_broker(self, broker_id: int) -> Watch | None:
        with self._lock:
            return self._by_broker.get(broker_id)

    def all(self) -> list[Watch]:
        with self._lock:
            return list(self._by_key.values())

    def replace(
        self,
        wanted: list[dict[str, Any]],
        set_one: Callable[[dict[str, Any]], tuple[m.Breakpoint, DataId, HitRule]],
        remove_one: Callable[[int], None],
    ) -> list[Watch]:
        """Make the set ``wanted``; the watches in its order."""
        keys = [key_of(req) for req in wanted]
        with self._lock:
            gone = [w for k, w in self._by_key.items() if k not in keys]
            for w in gone:
                del self._by_key[w.key]
                self._by_broker.pop(w.broker_id, None)
        for w in gone:  # removed first: their slots may be what the new ones need
            if w.broker_id:
                try:
                    remove_one(w.broker_id)
                except HwbkptError as err:
                    if err.code != "NOT_FOUND":  # already removed by the broker
                        raise
        out: list[Watch] = []
        for key, req in zip(keys, wanted, strict=True):
            with self._lock:
                kept = self._by_key.get(key)
            out.append(kept if kept is not None else self._add(key, req, set_one))
        return out

    def _add(
        self,
        key: WatchKey,
        req: dict[str, Any],
        set_one: Callable[[dict[str, Any]], tuple[m.Breakpoint, DataId, HitRule]],
    ) -> Watch:
        with self._lock:
            self._next_id += 1
            dap_id = self._next_id
        try:
            bp, data, rule = set_one(req)
        except (ValueError, HwbkptError) as err:
            # Not kept: asking again retries, as an editor does after the user edits it.
            return Watch(key, dap_id, None, 0, HitRule(), False, str(err))
        verified, message = state_view(bp.state, bp.pending_reason)
        watch = Watch(key, dap_id, data, bp.id, rule, verified, message)
        with self._lock:
            self._by_key[key] = watch
            self._by_broker[bp.id] = watch
        return watch

    def update(self, broker_id: int, verified: bool, message: str) -> Watch | None:
        """Change a watch's view; the watch when that changed anything, else None."""
        with self._lock:
            watch = self._by_broker.get(broker_id)
            if watch is None or (watch.verified, watch.message) == (verified, message):
                return None
            watch.verified, watch.message = verified, message
            return watch
