"""Which sessions hold which halted threads (DESIGN section 3, action HALT).

A thread stopped by a HALT slot stays stopped until every session whose HALT
request reported the hit has let it go (or the halt timeout passes). The book
keeps the holders and each halt's timeout handle; ``HitRouter`` schedules the
timeout on the core's clock, and the broker makes the mechanism calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwbkptd.core.clock import Timer

__all__ = ["Halt", "HeldThreads"]


@dataclass(slots=True)
class Halt:
    pid: int
    tid: int
    #: session id -> the breakpoint that halted the thread for that session.
    holders: dict[str, int] = field(default_factory=dict)
    timer: Timer | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class HeldThreads:
    def __init__(self) -> None:
        self._halts: dict[int, Halt] = {}

    def __contains__(self, tid: object) -> bool:
        return tid in self._halts

    def get(self, tid: int) -> Halt | None:
        return self._halts.get(tid)

    def tids(self) -> tuple[int, ...]:
        return tuple(sorted(self._halts))

    def hold(self, pid: int, tid: int, session_id: str, breakpoint_id: int) -> Halt:
        """Record that a session holds a thread; returns the halt (new or existing)."""
        halt = self._halts.get(tid)
        if halt is None:
            halt = self._halts[tid] = Halt(pid=pid, tid=tid)
        halt.holders.setdefault(session_id, breakpoint_id)
        return halt

    def held_by(self, session_id: str) -> tuple[int, ...]:
        return tuple(sorted(t for t, h in self._halts.items() if session_id in h.holders))

    def release(self, tid: int, session_id: str) -> bool:
        """The session lets the thread go; True when nobody holds it any more (resume it)."""
        halt = self._halts.get(tid)
        if halt is None or session_id not in halt.holders:
            return False
        del halt.holders[session_id]
        if halt.holders:
            return False
        halt.cancel_timer()
        del self._halts[tid]
        return True

    def drop(self, tid: int) -> Halt | None:
        """Forget a thread entirely (it exited, it timed out, the broker stops)."""
        halt = self._halts.pop(tid, None)
        if halt is not None:
            halt.cancel_timer()
        return halt
