"""Which table generation held a slot when: shared by the kernel and non-stop mechanisms.

A slot kept across table rewrites takes each new generation; a sample carries its
CLOCK_MONOTONIC time, so a hit that raced a rewrite is attributed to the generation
in force when it happened, never to the slot's next owner. A hit's reported time is
wall-clock time: ``wall_offset_ns`` turns a sample's time into it.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

__all__ = ["GENERATIONS_KEPT", "GenerationHistory", "wall_offset_ns"]

#: Rewrites remembered per slot; a sample older than all of them gets the oldest.
GENERATIONS_KEPT = 8


@dataclass(slots=True)
class GenerationHistory:
    """Since when (CLOCK_MONOTONIC ns) each generation in ``gens`` holds the slot."""

    since: list[int] = field(default_factory=list, kw_only=True)
    gens: list[int] = field(default_factory=list, kw_only=True)

    def hold(self, since_ns: int, generation: int) -> None:
        self.since.append(since_ns)
        self.gens.append(generation)
        if len(self.gens) > GENERATIONS_KEPT:
            del self.since[0], self.gens[0]

    def generation_at(self, t_ns: int) -> int:
        i = bisect.bisect_right(self.since, t_ns) - 1
        return self.gens[max(i, 0)]


def wall_offset_ns() -> int:
    """What to add to a CLOCK_MONOTONIC time to make it wall-clock (CLOCK_REALTIME) time.

    The samples stay on the monotonic clock, which generations and births are ordered
    by and which never jumps; each read of the rings takes the offset anew, so a step
    of the wall clock counts from the next read on. The monotonic reading is bracketed
    by two wall readings: the offset is exact to half their distance (well under a us).
    """
    before = time.time_ns()
    mono = time.monotonic_ns()
    return (before + time.time_ns()) // 2 - mono
