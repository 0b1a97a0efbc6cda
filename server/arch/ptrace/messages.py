"""What the tracer thread tells the event loop: one frozen dataclass per kind.

The tracer gathers messages in an ``Outbox`` and hands them over in batches
(mechanism.py); ``deliver`` runs on the event loop and dispatches each by its
type. Futures are completed here, on the loop, never by the tracer thread (a
completion callback would write to the loop's wake-up socket: see tracer.py),
and in order, after the events that came before them.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hwbkptd.core.mechanism import HitReport, MechanismSink

__all__ = [
    "Failed",
    "Hits",
    "Message",
    "Note",
    "Outbox",
    "ProcessExec",
    "ProcessExited",
    "Progressed",
    "Resolved",
    "ThreadExited",
    "ThreadStarted",
    "deliver",
]

_log = logging.getLogger("hwbkptd.ptrace")

Future = concurrent.futures.Future


@dataclass(frozen=True, slots=True)
class Hits:
    """Consecutive hits; the tracer appends to ``reports`` until it posts the batch."""

    reports: list[HitReport]


@dataclass(frozen=True, slots=True)
class ThreadStarted:
    pid: int
    tid: int


@dataclass(frozen=True, slots=True)
class ThreadExited:
    pid: int
    tid: int
    exit_code: int


@dataclass(frozen=True, slots=True)
class ProcessExited:
    pid: int
    exit_code: int


@dataclass(frozen=True, slots=True)
class ProcessExec:
    pid: int


@dataclass(frozen=True, slots=True)
class Note:
    """A log line: the tracer thread never logs itself (see tracer.py)."""

    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """A command's answer."""

    future: Future[Any]
    value: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """A command's error."""

    future: Future[Any]
    error: BaseException


@dataclass(frozen=True, slots=True)
class Progressed:
    """A command's progress: ``report(done, total)`` is called on the event loop."""

    report: Callable[[int, int], None]
    done: int
    total: int


Message = (
    Hits
    | ThreadStarted
    | ThreadExited
    | ProcessExited
    | ProcessExec
    | Note
    | Resolved
    | Failed
    | Progressed
)


class Outbox:
    """The messages the tracer thread gathered since its last hand-over."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Message] = []

    def send(self, message: Message) -> None:
        self.items.append(message)

    def note(self, text: str, level: int = logging.DEBUG) -> None:
        self.items.append(Note(level, text))

    def resolve(self, future: Future[Any], value: Any) -> None:
        """Complete a command's future (on the event loop, after the events before it)."""
        self.items.append(Resolved(future, value))

    def fail(self, future: Future[Any], error: BaseException) -> None:
        self.items.append(Failed(future, error))

    def take(self) -> list[Message]:
        """What gathered, in order; the outbox starts empty again."""
        items, self.items = self.items, []
        return items


def deliver(sink: MechanismSink, batch: Sequence[Message]) -> int:
    """Hand a batch to the sink in order (event loop); returns how many hits and events it
    held. Runs of ``Hits`` reach the sink as one ``on_hits`` call: the lists are joined as
    they are (the tracer let go of them when it posted), nothing is done per hit."""
    size = len(batch)
    hits: list[HitReport] | None = None
    for message in batch:
        match message:
            case Hits(reports):
                size += len(reports) - 1
                if hits is None:
                    hits = reports
                else:
                    hits.extend(reports)
                continue
            case Note(level, text):
                _log.log(level, text)
                continue
            case Resolved(future, value):
                if not future.done():
                    future.set_result(value)
                continue
            case Failed(future, error):
                if not future.done():
                    future.set_exception(error)
                continue
            case Progressed(report, done, total):
                _call(report, done, total)
                continue
        if hits is not None:
            _call(sink.on_hits, hits)
            hits = None
        match message:
            case ThreadStarted(pid, tid):
                _call(sink.on_thread_started, pid, tid)
            case ThreadExited(pid, tid, code):
                _call(sink.on_thread_exited, pid, tid, code)
            case ProcessExited(pid, code):
                _call(sink.on_process_exited, pid, code)
            case ProcessExec(pid):
                _call(sink.on_process_exec, pid)
    if hits is not None:
        _call(sink.on_hits, hits)
    return size


def _call(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        _log.exception("ptrace: sink callback failed")
