"""``WatchSlotMap``: the slot map streamed to operators (``hwbkpt top``), pushed by change.

A watcher subscribes to the broker's activity feed; any event, session or hit marks the view
changed, and the stream sends the slot map again with what happened since, at most once per
``min_interval`` (changes in between are merged into one update). While nothing changes
nothing is sent, so an idle broker costs its watchers nothing. The stream ends when the
broker stops (its last update carries the sessions' removals) or the client goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert, convert_events
from hwbkptd.core import policy
from hwbkptd.core.broker import Broker
from hwbkptd.core.errors import NotFound
from hwbkptd.core.events import Event, EventKind, Hit

__all__ = ["DEFAULT_INTERVAL_MS", "MAX_NEWS", "SlotWatcher", "watch_slot_map"]

DEFAULT_INTERVAL_MS = 100
#: News kept between two updates; older news is dropped first (a watcher is a view, and the
#: sessions' own streams are the record).
MAX_NEWS = 1000


class SlotWatcher:
    """What one watch learns from the activity feed between two updates."""

    def __init__(self, sessions: Sequence[tuple[str, str]]) -> None:
        self.changed = asyncio.Event()
        self.changed.set()  # the first update goes at once
        self.stopping = False
        self.sessions = dict(sessions)
        self.hits: Counter[int] = Counter()
        self.dropped: Counter[int] = Counter()
        self.news: list[tuple[str, str, Event]] = []
        #: Who watches: the names it may not see are hidden in every update.
        self.viewer = policy.CALLER.get()

    def session_opened(self, session_id: str, name: str) -> None:
        self.sessions[session_id] = name
        self.changed.set()

    def _name(self, broker: Broker, session_id: str, name: str) -> str:
        """``name`` as this watch's caller may see it (its policy's session-name right)."""
        if policy.shows_name(self.viewer, broker.session_owner(session_id)):
            return name
        return policy.HIDDEN_SESSION

    def session_closed(self, session_id: str, name: str) -> None:
        self.sessions.pop(session_id, None)
        self.changed.set()

    def event(
        self, session_id: str, name: str, breakpoint_id: int, kind: EventKind, queued: bool
    ) -> None:
        if isinstance(kind, Hit):
            (self.hits if queued else self.dropped)[breakpoint_id] += 1
        else:
            self.news.append((session_id, name, Event(0, time.time_ns(), breakpoint_id, kind)))
            del self.news[:-MAX_NEWS]
        self.changed.set()

    def delivered(self, session_id: str, name: str, events: Sequence[Event], now_ns: int) -> None:
        pass

    def _seen(self, broker: Broker, event: Event) -> Event:
        kind = policy.displaced_for(self.viewer, event.kind, broker.request_owner)
        return event if kind is event.kind else dataclasses.replace(event, kind=kind)

    def broker_stopping(self) -> None:
        self.stopping = True
        self.changed.set()

    def update(self, broker: Broker, pid: int) -> broker_pb2.WatchSlotMapResponse:
        """The slot map now, with the news since the last update (which it then forgets)."""
        news, self.news = self.news, []
        self.changed.clear()
        answer = broker_pb2.WatchSlotMapResponse(
            slot_map=convert.slot_map_to_proto(broker.slot_map(pid)),
            hits=[
                broker_pb2.BreakpointHits(
                    breakpoint_id=rid, hits=self.hits[rid], dropped=self.dropped[rid]
                )
                for rid in sorted(self.hits.keys() | self.dropped.keys())
            ],
            news=[
                broker_pb2.SessionNews(
                    session_id=sid,
                    session_name=self._name(broker, sid, name),
                    event=convert_events.event_to_proto(self._seen(broker, event)),
                )
                for sid, name, event in news
            ],
            sessions=[
                broker_pb2.OpenSessionSummary(
                    session_id=sid, session_name=self._name(broker, sid, name)
                )
                for sid, name in sorted(self.sessions.items())
            ],
        )
        answer.time.FromNanoseconds(time.time_ns())
        return answer


async def watch_slot_map(
    broker: Broker, request: broker_pb2.WatchSlotMapRequest
) -> AsyncIterator[broker_pb2.WatchSlotMapResponse]:
    interval = (
        convert.duration_from_proto(request.min_interval, "min_interval")
        or DEFAULT_INTERVAL_MS / 1000
    )
    broker.slot_map(request.pid)  # NOT_FOUND for a pid that is not traced, before streaming
    watcher = SlotWatcher(broker.open_sessions())
    unsubscribe = broker.activity.subscribe(watcher)
    try:
        while True:
            await watcher.changed.wait()
            if watcher.stopping:
                yield watcher.update(broker, 0)
                return
            try:
                yield watcher.update(broker, request.pid)
            except NotFound:
                # The watched process ended: show every process from now on.
                yield watcher.update(broker, 0)
            # Merge what happens during the interval into the next update.
            await asyncio.sleep(interval)
    finally:
        unsubscribe()
