"""Progress of the broker's long operations on stderr (issue 14): ``attach``, ``watch`` and
``launch`` show a bar per operation while an attach of many threads or the reading of a
large binary goes on.

The broker reports on the session's event stream (``Progress`` events); the call that
started the work blocks until it is done, so it runs on a worker thread while this one
reads the stream (``call_with_progress``). On a terminal each operation is a rich bar
that goes away when it finishes; elsewhere (a pipe, a log file) one line says what was
done once it is done. stdout is left alone: in ``--json`` mode the events are printed
there as records like every other event, in text mode they are not printed.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from hwbkpt import models as m
from hwbkpt.client import Session

__all__ = ["ProgressDisplay", "call_with_progress", "progress_text"]

T = TypeVar("T")

#: How often the waiting thread looks at the stream while the call runs.
_PUMP = 0.05


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover - the loop always returns


def _what(p: m.Progress) -> str:
    if p.operation == "attach":
        return f"attaching pid {p.pid}"
    return f"reading {p.detail} of {p.module}"


def _amount(p: m.Progress) -> str:
    if p.operation == "attach":
        return f"{p.done}/{p.total or '?'} threads"
    return f"{_size(p.done)}/{_size(p.total) if p.total else '?'}"


def progress_text(p: m.Progress) -> str:
    """One line for a finished operation (stderr when it is not a terminal)."""
    if p.operation == "attach":
        return f"hwbkpt: attached pid {p.pid}: {p.done} threads"
    return f"hwbkpt: read the {p.detail} of {p.module} ({_size(p.done)})"


class ProgressDisplay:
    """Bars on a terminal, one line per finished operation elsewhere."""

    def __init__(self, err: TextIO | None = None, *, live: bool | None = None) -> None:
        self._err = err if err is not None else sys.stderr
        self._live = self._err.isatty() if live is None else live
        self._bars: Progress | None = None
        self._tasks: dict[tuple[str, int, str, str], TaskID] = {}
        self._seen = 0

    def show_event(self, ev: m.Event) -> None:
        """Show a Progress event once: the ones received during a call come again, from
        the backlog, after it (by seq, which only grows)."""
        if isinstance(ev.payload, m.Progress) and ev.seq > self._seen:
            self._seen = ev.seq
            self.show(ev.payload)

    def show(self, p: m.Progress) -> None:
        key = (p.operation, p.pid, p.module, p.detail)
        if not self._live:
            if p.finished:
                print(progress_text(p), file=self._err, flush=True)
            return
        bars = self._start()
        task = self._tasks.pop(key, None) if p.finished else self._tasks.get(key)
        if p.finished:
            if task is not None:
                bars.remove_task(task)
            # Above the bars that go on, through rich: a plain print would break its redraw.
            bars.console.print(progress_text(p), markup=False, highlight=False)
            return
        total = float(p.total) if p.total else None
        if task is None:
            task = self._tasks[key] = bars.add_task(_what(p), total=total, amount="")
        bars.update(task, completed=p.done, total=total, amount=_amount(p))
        bars.refresh()  # a dozen reports per operation: each one drawn

    def _start(self) -> Progress:
        if self._bars is None:
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeElapsedColumn(),
                # Live was chosen for a terminal (or by the caller): draw as on one.
                console=Console(file=self._err, force_terminal=True),
                transient=True,
            )
            self._bars.start()
        return self._bars

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()


def call_with_progress(
    session: Session, call: Callable[[], T], display: ProgressDisplay
) -> tuple[T, deque[m.Event]]:
    """Run ``call`` while showing the Progress events that arrive meanwhile; its answer
    and every event received meanwhile (the Progress ones too, shown already), in order,
    for the caller to print: JSON output has no hole in the numbers."""
    answer: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(call())
        except BaseException as err:  # handed to the waiting thread, raised there
            failure.append(err)

    worker = threading.Thread(target=run, name="hwbkpt-call", daemon=True)
    worker.start()
    received: deque[m.Event] = deque()
    while worker.is_alive():
        ev = session.next_event(_PUMP) if not session.ended else None
        if ev is None:
            worker.join(_PUMP if session.ended else 0)
            continue
        display.show_event(ev)
        received.append(ev)
    worker.join()
    if failure:
        raise failure[0]
    return answer[0], received
