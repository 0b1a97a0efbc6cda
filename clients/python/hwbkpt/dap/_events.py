"""Broker session events turned into DAP events: the adapter's second thread.

``EventPump`` reads one session's events and writes the DAP ``stopped``, ``breakpoint``,
``continued``, ``output``, ``thread``, ``exited`` and ``terminated`` events through the
adapter's ``Wire``. The threads it stops are kept in ``Stops``, which the adapter's
``threads``, ``stackTrace``, ``scopes``, ``variables`` and ``continue`` requests read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from hwbkpt import models as m
from hwbkpt.dap._mapping import displaced_message, hit_output
from hwbkpt.dap._watches import Watch, Watches, state_view
from hwbkpt.dap._wire import Wire
from hwbkpt.errors import HwbkptError
from hwbkpt.session import Session

__all__ = ["EventPump", "Stop", "Stops"]


@dataclass(frozen=True, slots=True)
class Stop:
    breakpoint_id: int
    hit: m.Hit


class Stops:
    """The threads halted at a data breakpoint, by tid; shared by both threads."""

    def __init__(self) -> None:
        self._by_tid: dict[int, Stop] = {}
        self._lock = threading.Lock()

    def get(self, tid: int) -> Stop | None:
        with self._lock:
            return self._by_tid.get(tid)

    def put(self, tid: int, stop: Stop) -> None:
        with self._lock:
            self._by_tid[tid] = stop

    def drop(self, tid: int) -> None:
        with self._lock:
            self._by_tid.pop(tid, None)

    def clear(self) -> None:
        with self._lock:
            self._by_tid.clear()

    def tids(self) -> set[int]:
        with self._lock:
            return set(self._by_tid)


class EventPump:
    """Turns the events of the session debugging ``pid`` into DAP events on ``wire``.

    ``resume`` lets threads go on (the hits an "every Nth hit" rule skips).
    """

    def __init__(
        self,
        wire: Wire,
        watches: Watches,
        stops: Stops,
        pid: int,
        resume: Callable[[list[int]], None],
    ) -> None:
        self._wire = wire
        self._watches = watches
        self._stops = stops
        self._pid = pid
        self._resume = resume

    def run(self, session: Session) -> None:
        """Read ``session``'s events until its stream ends; an error ends the debug session."""
        try:
            for event in session.events():
                self.on_event(event)
        except HwbkptError as err:
            self._wire.event("output", {"category": "stderr", "output": f"{err}\n"})
            self._wire.event("terminated")

    def on_event(self, event: m.Event) -> None:
        payload = event.payload
        bid = event.breakpoint_id
        if isinstance(payload, m.Hit):
            self._on_hit(bid, payload)
        elif isinstance(payload, m.Displaced):
            self._changed(bid, False, displaced_message(payload))
        elif isinstance(payload, m.Restored):
            self._changed(bid, True, "restored: the slot is back")
        elif isinstance(payload, m.StateChanged):
            self._on_state(bid, payload)
        elif isinstance(payload, m.Removed):
            if payload.reason != "client":
                self._changed(bid, False, f"removed by the broker ({payload.reason})")
        elif isinstance(payload, m.TargetExited):
            self._on_exit(payload)
        elif isinstance(payload, m.HaltTimeout):
            self._stops.drop(payload.tid)
            self._output(
                f"thread {payload.tid} resumed by the broker: halted longer than "
                f"{payload.seconds:g} s\n"
            )
            self._wire.event("continued", {"threadId": payload.tid})
        elif isinstance(payload, m.HitsDropped):
            self._output(f"{payload.count} hits dropped (the session's buffer was full)\n")
        elif isinstance(payload, m.TargetExec):
            self._output(f"process {payload.pid} ran exec: its data breakpoints are gone\n")

    def _on_state(self, bid: int, state: m.StateChanged) -> None:
        watch = self._watches.by_broker(bid)
        if watch is None:
            return
        verified, message = state_view(state.state, state.pending_reason)
        # A displacement has its own, better message (who took the slot); a state that
        # follows it only says "pending".
        if not verified and watch.message.startswith("displaced"):
            return
        self._changed(bid, verified, message)

    def _on_hit(self, bid: int, hit: m.Hit) -> None:
        watch = self._watches.by_broker(bid)
        where = hit.ip_symbol or f"{hit.ip:#x}"
        if not hit.halted:
            self._output(hit_output(watch.dap_id if watch else bid, hit, where))
            return
        if watch is not None and watch.rule.every and hit.hit_count % watch.rule.every:
            # "every Nth hit" is this adapter's filter: the other hits go on at once.
            self._resume([hit.tid])
            return
        self._stops.put(hit.tid, Stop(bid, hit))
        self._wire.event(
            "stopped",
            {
                "reason": "data breakpoint",
                "threadId": hit.tid,
                "allThreadsStopped": False,
                "hitBreakpointIds": [watch.dap_id] if watch else [],
                "description": "data breakpoint",
                "text": hit_output(watch.dap_id if watch else bid, hit, where).strip(),
            },
        )

    def _on_exit(self, gone: m.TargetExited) -> None:
        if gone.tid and gone.tid != gone.pid:
            self._wire.event("thread", {"reason": "exited", "threadId": gone.tid})
            return
        if gone.pid != self._pid:
            return
        self._wire.event("exited", {"exitCode": gone.exit_code})
        self._wire.event("terminated")

    def _changed(self, bid: int, verified: bool, message: str) -> None:
        watch = self._watches.update(bid, verified, message)
        if watch is not None:
            self._send_changed(watch)

    def _send_changed(self, watch: Watch) -> None:
        self._wire.event("breakpoint", {"reason": "changed", "breakpoint": watch.dap()})

    def _output(self, text: str) -> None:
        self._wire.event("output", {"category": "console", "output": text})
