"""Moving breakpoint events between a CPU's two rings, off the event loop.

``PERF_EVENT_IOC_SET_OUTPUT`` on an event that already writes into a ring
waits for an RCU grace period before it attaches the new one (measured here:
13-16 ms per event), and two moves into the same ring serialise on that ring's
mutex. So moves run in worker threads, one job per CPU, while the loop goes
on reading both rings. Until the kernel switches an event it keeps writing
into the old ring, and afterwards into the new one: nothing is dropped on the
way, which is why every read reads both rings of a CPU.

Every descriptor a job uses is a ``dup`` made on the loop thread when the move
is asked for: the loop may close an event (thread exit, CPU offline) while a
job is still running, and the number could then name some other file. A dup
keeps that event alive until its job ends, which is why ``apply`` waits for a
running move first (a closed event must not keep holding a debug register).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog

from hwbkptd.arch.perf.percpu import IOC_SET_OUTPUT, errno_text

__all__ = ["RingMover"]

_log = structlog.get_logger("hwbkptd.perf")


def _move(ring_fd: int, event_fds: Sequence[int]) -> int:
    """Point each event at the ring; closes every descriptor it was given. Failures."""
    failed = 0
    try:
        for fd in event_fds:
            try:
                fcntl.ioctl(fd, IOC_SET_OUTPUT, ring_fd)
            except OSError as exc:
                failed += 1
                _log.warning("nonstop_ring_move_failed", error=errno_text(exc))
    finally:
        for fd in event_fds:
            os.close(fd)
        os.close(ring_fd)
    return failed


class RingMover:
    """Runs ring moves in threads (see the module doc)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def move(
        self, loop: asyncio.AbstractEventLoop, jobs: Mapping[int, tuple[int, Sequence[int]]]
    ) -> asyncio.Future[list[int]]:
        """cpu -> (ring fd, event fds): each CPU's events moved to its ring, in parallel.

        The result is the number of failed moves per CPU.
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nonstop-ring")
        # Every dup first: a job must not start unless all of them can.
        prepared: list[tuple[int, list[int]]] = []
        try:
            for ring_fd, event_fds in jobs.values():
                dups = [os.dup(ring_fd)]
                prepared.append((dups[0], dups))
                for fd in event_fds:
                    dups.append(os.dup(fd))
        except OSError:
            for _, dups in prepared:
                for fd in dups:
                    os.close(fd)
            raise
        futures = [
            loop.run_in_executor(self._pool, _move, ring_dup, dups[1:])
            for ring_dup, dups in prepared
        ]
        return asyncio.gather(*futures)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
