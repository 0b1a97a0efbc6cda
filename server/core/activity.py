"""What the sessions are told, fanned out to observers: the metrics and the slot-map watch.

Every event a session emits, every session opened or closed, and every batch its stream hands
to the client passes through one ``Activity``; observers subscribe to it and never reach into
the broker. With no observer it costs one truth test per event (the hit path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from hwbkptd.core.events import Event, EventKind

__all__ = ["Activity", "ActivityListener"]


class ActivityListener(Protocol):
    """What an observer is told. Every call runs on the event loop, inside the broker's
    call that caused it: keep it short and never call back into the broker."""

    def session_opened(self, session_id: str, name: str) -> None: ...

    def session_closed(self, session_id: str, name: str) -> None: ...

    def event(
        self, session_id: str, name: str, breakpoint_id: int, kind: EventKind, queued: bool
    ) -> None:
        """An event for a session; ``queued`` is False for a hit dropped (buffer full)."""

    def delivered(self, session_id: str, name: str, events: Sequence[Event], now_ns: int) -> None:
        """A session's stream handed ``events`` to its client at ``now_ns``."""

    def broker_stopping(self) -> None:
        """The broker is shutting down: every session has been told its last event."""


class Activity:
    def __init__(self) -> None:
        self._listeners: list[ActivityListener] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def subscribe(self, listener: ActivityListener) -> Callable[[], None]:
        """Start telling ``listener``; returns what stops it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def session_opened(self, session_id: str, name: str) -> None:
        for listener in list(self._listeners):
            listener.session_opened(session_id, name)

    def session_closed(self, session_id: str, name: str) -> None:
        for listener in list(self._listeners):
            listener.session_closed(session_id, name)

    def event(
        self, session_id: str, name: str, breakpoint_id: int, kind: EventKind, queued: bool
    ) -> None:
        for listener in list(self._listeners):
            listener.event(session_id, name, breakpoint_id, kind, queued)

    def delivered(self, session_id: str, name: str, events: Sequence[Event], now_ns: int) -> None:
        for listener in list(self._listeners):
            listener.delivered(session_id, name, events, now_ns)

    def broker_stopping(self) -> None:
        for listener in list(self._listeners):
            listener.broker_stopping()
