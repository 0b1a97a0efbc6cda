"""Progress of long operations, told to the session that waits for them (issue 14).

An attach of a process with thousands of threads, or the first name resolution in a
large binary, takes long enough that a client should see it move. The work reports
raw counts (the ptrace tracer every ``ATTACH_STEP`` threads, the names layer every
few thousand symbols or DIEs); a ``ProgressReporter`` decides what reaches the session:

- nothing for an operation too small to matter: fewer than ``min_total`` units (256
  threads, 1 MiB of sections) and not running for ``MIN_SECONDS`` yet;
- else a first report at once, then at most one per tenth of the work (``STEPS``) or
  per ``INTERVAL`` seconds of the core's clock, whichever comes first, so a client
  sees about a dozen reports however large the operation;
- and a last one, ``finished`` with done == total, for any operation that reported
  (or that ran for ``MIN_SECONDS`` without a word: then it is the only one).

``done`` never decreases; ``total`` is what is known now and may grow (threads created
during the attach). All of it runs on the event loop; ``on_loop`` carries reports
made on another thread (the names worker) there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from hwbkptd.core.clock import Clock
from hwbkptd.core.events import Progress, ProgressOperation
from hwbkptd.core.model import Access

if TYPE_CHECKING:
    from hwbkptd.core.names import NameProgress, Names
    from hwbkptd.core.sessions import Session

__all__ = [
    "ATTACH_MIN_THREADS",
    "INTERVAL",
    "MIN_SECONDS",
    "RESOLVE_MIN_BYTES",
    "STEPS",
    "ProgressFeed",
    "ProgressReporter",
    "on_loop",
    "prepare_hit_words",
    "prepare_names",
    "session_emitter",
]

#: An attach of fewer threads reports nothing (unless it runs for MIN_SECONDS).
ATTACH_MIN_THREADS = 256
#: A binary whose sections read are smaller reports nothing (unless it runs for MIN_SECONDS).
RESOLVE_MIN_BYTES = 1 << 20
#: Any operation running this long reports, whatever its size.
MIN_SECONDS = 0.5
#: At most one report per this many seconds...
INTERVAL = 0.1
#: ... or per this fraction (1/STEPS) of the work, whichever comes first.
STEPS = 10


class ProgressReporter:
    """One operation's reports to one session; ``emit`` queues one Progress event."""

    def __init__(
        self,
        emit: Callable[[Progress], None],
        clock: Clock,
        *,
        operation: ProgressOperation,
        pid: int,
        min_total: int,
        module: str = "",
        detail: str = "",
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._operation = operation
        self._pid = pid
        self._module = module
        self._detail = detail
        self._min_total = min_total
        self._start = clock.monotonic()
        self._last_at = self._start
        self._last_done = -1
        self._total = 0
        self.started = False
        self.finished = False

    def _long(self, total: int, now: float) -> bool:
        return total >= self._min_total or now - self._start >= MIN_SECONDS

    def update(self, done: int, total: int) -> None:
        """``done`` units of ``total`` (0: unknown) are done; reports if it is time to."""
        if self.finished:
            return
        self._total = max(self._total, total, done)
        now = self._clock.monotonic()
        if not self.started:
            if self._long(self._total, now):
                self._send(done, now)
            return
        if done <= self._last_done:
            return
        step = max(1, self._total // STEPS)
        if now - self._last_at >= INTERVAL or done - self._last_done >= step:
            self._send(done, now)

    def finish(self, done: int) -> None:
        """The operation is over with ``done`` units done: the last report, if any is due."""
        if self.finished:
            return
        self.finished = True
        # An operation that said nothing before and was quick stays quiet: a second attach
        # of a process the broker already traces answers at once, whatever its size.
        if not self.started and self._clock.monotonic() - self._start < MIN_SECONDS:
            return
        done = max(done, self._last_done)
        self._total = done
        self._last_done = done
        self._emit(self._progress(done, finished=True))

    def _send(self, done: int, now: float) -> None:
        self.started = True
        done = max(done, self._last_done, 0)
        self._last_done = done
        self._last_at = now
        self._emit(self._progress(done, finished=False))

    def _progress(self, done: int, *, finished: bool) -> Progress:
        return Progress(
            operation=self._operation,
            pid=self._pid,
            module=self._module,
            detail=self._detail,
            done=done,
            total=self._total,
            finished=finished,
        )


class ProgressFeed:
    """The reports of a name resolution: one reporter per (module, part) read.

    The names layer reports ``(module, detail, done, total)``; a part whose done
    reaches its total is finished; ``close`` finishes what an error cut short.
    """

    def __init__(
        self, emit: Callable[[Progress], None], clock: Clock, *, pid: int, min_total: int
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._pid = pid
        self._min_total = min_total
        self._parts: dict[tuple[str, str], ProgressReporter] = {}
        self._done: dict[tuple[str, str], int] = {}
        self._closed = False

    def report(self, module: str, detail: str, done: int, total: int) -> None:
        if self._closed:
            return  # a worker still reading for a call that is over (cancelled)
        key = (module, detail)
        reporter = self._parts.get(key)
        if reporter is None or reporter.finished:
            reporter = self._parts[key] = ProgressReporter(
                self._emit,
                self._clock,
                operation=ProgressOperation.RESOLVE,
                pid=self._pid,
                min_total=self._min_total,
                module=module,
                detail=detail,
            )
        self._done[key] = done
        if total > 0 and done >= total:
            reporter.finish(done)
        else:
            reporter.update(done, total)

    def close(self) -> None:
        self._closed = True
        for key, reporter in self._parts.items():
            reporter.finish(self._done.get(key, 0))


def on_loop(
    loop: asyncio.AbstractEventLoop, report: Callable[[str, str, int, int], None]
) -> Callable[[str, str, int, int], None]:
    """``report`` made callable from another thread: each call runs on ``loop``, in order."""

    def hop(module: str, detail: str, done: int, total: int) -> None:
        loop.call_soon_threadsafe(report, module, detail, done, total)

    return hop


def session_emitter(session: Session) -> Callable[[Progress], None]:
    """What queues a report on ``session`` (nothing once it is closed)."""

    def emit(progress: Progress) -> None:
        if not session.closed:
            session.emit(0, progress)

    return emit


async def prepare_names(
    names: Names | None, session: Session, clock: Clock, pid: int, location: str, access: Access
) -> None:
    """Read what resolving ``location`` in ``pid`` reads on a worker thread, telling
    ``session`` how far it came, so that the resolution that follows on the event loop
    finds it read and the loop never waits seconds for a large binary (issue 14)."""
    if names is None or pid <= 0 or not location:
        return
    await _on_worker(
        session, clock, pid, lambda report: names.prepare(pid, location, access, report)
    )


async def prepare_hit_words(
    names: Names | None, session: Session, clock: Clock, pid: int, address: int
) -> None:
    """Read what describing hits on ``address`` in ``pid`` reads on a worker thread, telling
    ``session`` as ``prepare_names`` does: otherwise the first hit in a binary new to the
    broker reads it on the event loop, holding every hit behind it (40 ms for a small
    program here; seconds for a large one)."""
    if names is None or pid <= 0:
        return
    await _on_worker(session, clock, pid, lambda report: names.prepare_hits(pid, address, report))


async def _on_worker(
    session: Session, clock: Clock, pid: int, work: Callable[[NameProgress], None]
) -> None:
    feed = ProgressFeed(session_emitter(session), clock, pid=pid, min_total=RESOLVE_MIN_BYTES)
    report = on_loop(asyncio.get_running_loop(), feed.report)
    try:
        await asyncio.to_thread(work, report)
    finally:
        # The worker's last reports were queued on the loop before its answer: told by now.
        feed.close()
