"""Which table generation held a slot when: shared by the kernel and non-stop mechanisms.

A slot kept across table rewrites takes each new generation; a sample carries its
CLOCK_MONOTONIC time, so a hit that raced a rewrite is attributed to the generation
in force when it happened, never to the slot's next owner.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["GENERATIONS_KEPT", "GenerationHistory"]

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
