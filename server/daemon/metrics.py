"""Prometheus metrics of a live broker (``hwbkptd --metrics tcp:HOST:PORT``).

Counters come from the broker's activity feed (core/activity.py), the same events the
sessions' streams carry, so a scrape agrees with what the clients saw; the gauges of slots,
threads and processes are read from the broker's public slot map at scrape time. Counting
is plain dict arithmetic on the event loop (the hit path pays no lock); the collector turns
it into metric families when Prometheus asks, also on the event loop (metrics_http.py).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hwbkptd.core.broker_types import SlotMapView
from hwbkptd.core.events import (
    Displaced,
    Event,
    EventKind,
    Hit,
    HitsDropped,
    Removed,
    Restored,
    StateChanged,
)
from hwbkptd.core.model import RequestState

__all__ = ["LATENCY_BUCKETS", "BrokerMetrics", "MetricsCollector"]

#: Trap-to-client latency buckets, seconds (upper bounds; +Inf is added).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

#: (session id, session name): a session's labels.
SessionKey = tuple[str, str]


@dataclass
class BrokerMetrics:
    """Counts kept from the activity feed (an ``ActivityListener``)."""

    sessions: dict[str, str] = field(default_factory=dict)
    hits: Counter[SessionKey] = field(default_factory=Counter)
    dropped: Counter[SessionKey] = field(default_factory=Counter)
    displacements: Counter[SessionKey] = field(default_factory=Counter)
    restores: Counter[SessionKey] = field(default_factory=Counter)
    #: Each live request's latest state, by breakpoint id.
    states: dict[int, RequestState] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0

    def session_opened(self, session_id: str, name: str) -> None:
        self.sessions[session_id] = name

    def session_closed(self, session_id: str, name: str) -> None:
        self.sessions.pop(session_id, None)

    def event(
        self, session_id: str, name: str, breakpoint_id: int, kind: EventKind, queued: bool
    ) -> None:
        key = (session_id, name)
        if isinstance(kind, Hit):
            if queued:
                self.hits[key] += 1
            else:
                self.dropped[key] += 1
        elif isinstance(kind, StateChanged):
            self.states[breakpoint_id] = kind.state
        elif isinstance(kind, Displaced):
            self.displacements[key] += 1
        elif isinstance(kind, Restored):
            self.restores[key] += 1
        elif isinstance(kind, Removed):
            self.states.pop(breakpoint_id, None)
        elif isinstance(kind, HitsDropped):
            # Traps the mechanism lost (a session's own overflow is counted hit by hit).
            self.dropped[key] += kind.count

    def broker_stopping(self) -> None:
        pass  # the last scrape still shows the final counts

    def delivered(self, session_id: str, name: str, events: Sequence[Event], now_ns: int) -> None:
        for event in events:
            if isinstance(event.kind, Hit):
                seconds = max(0.0, (now_ns - event.time_ns) / 1e9)
                self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
                self.latency_sum += seconds


def _per_session(name: str, doc: str, counts: Counter[SessionKey]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=("session_id", "session"))
    for (session_id, session), value in sorted(counts.items()):
        family.add_metric((session_id, session), value)
    return family


class MetricsCollector(Collector):
    """The metric families of one broker: ``metrics`` plus its slot map read at scrape."""

    def __init__(
        self, metrics: BrokerMetrics, slot_map: Callable[[], SlotMapView], pools: Sequence[str]
    ) -> None:
        self._metrics = metrics
        self._slot_map = slot_map
        self._pools = tuple(pools)

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield from self._slot_families(self._slot_map())
        sessions = GaugeMetricFamily("hwbkpt_sessions", "Open sessions")
        sessions.add_metric((), len(m.sessions))
        yield sessions
        states = GaugeMetricFamily(
            "hwbkpt_requests", "Live breakpoint requests by state", labels=("state",)
        )
        by_state = Counter(m.states.values())
        for state in (RequestState.INSTALLED, RequestState.PARTIAL, RequestState.PENDING):
            states.add_metric((state.value,), by_state[state])
        yield states
        yield _per_session("hwbkpt_hits", "Hits queued for each session's stream", m.hits)
        yield _per_session(
            "hwbkpt_hits_dropped", "Hits dropped: session buffer full or traps lost", m.dropped
        )
        yield _per_session(
            "hwbkpt_displacements", "Requests displaced by stronger ones", m.displacements
        )
        yield _per_session("hwbkpt_restores", "Displaced requests restored", m.restores)
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), m.latency_counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        latency = HistogramMetricFamily(
            "hwbkpt_trap_to_client_seconds",
            "From a hit's trap to its event handed to the client's stream",
        )
        latency.add_metric((), buckets, m.latency_sum)
        yield latency

    def _slot_families(self, sm: SlotMapView) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "hwbkpt_slots_used",
            "Slots holding a watch (or held outside the broker), summed over the traced "
            "threads and the CPU context",
            labels=("pool",),
        )
        counts = Counter(
            s.pool for t in sm.threads for s in t.slots if s.chunk is not None or s.external
        )
        for pool in self._pools:
            used.add_metric((pool,), counts[pool])
        yield used
        user = [t for t in sm.threads if t.tid != 0]
        threads = GaugeMetricFamily("hwbkpt_traced_threads", "Threads the broker traces")
        threads.add_metric((), len(user))
        yield threads
        procs = GaugeMetricFamily("hwbkpt_attached_processes", "Processes the broker traces")
        procs.add_metric((), len({t.pid for t in user}))
        yield procs
