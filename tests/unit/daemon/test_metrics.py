"""hwbkptd.daemon.metrics: counts kept from activity events become the documented metric
families; slot gauges come from the slot map handed in."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from hwbkptd.core.broker_types import SlotMapView, SlotView, ThreadSlotsView
from hwbkptd.core.events import (
    Displaced,
    Event,
    Hit,
    HitsDropped,
    Removed,
    Restored,
    StateChanged,
)
from hwbkptd.core.model import Access, Chunk, PendingReason, RequestState
from hwbkptd.daemon.metrics import LATENCY_BUCKETS, BrokerMetrics, MetricsCollector


def _hit() -> Hit:
    return Hit(1, 1, 0, 0x400000, 0x601000, None, b"", b"", 1, 1)


def _slot_map() -> SlotMapView:
    chunk = Chunk("dr", 0x601000, 8, Access.WRITE)
    held = SlotView("dr", 0, chunk, ((1, "ide", 25),))
    free = SlotView("dr", 1, None, ())
    outside = SlotView("dr", 2, None, (), external=True)
    return SlotMapView(
        threads=(
            ThreadSlotsView(10, 10, 1, (held, free, outside)),
            ThreadSlotsView(10, 11, 1, (held, free, free)),
            ThreadSlotsView(0, 0, 1, (free, free, free)),
        ),
        waiting=(),
    )


def _samples(m: BrokerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(m, _slot_map, ["dr"]))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_counts_from_events() -> None:
    m = BrokerMetrics()
    m.session_opened("s1", "ide")
    m.session_opened("s2", "tracer")
    installed = StateChanged(RequestState.INSTALLED, PendingReason.NONE, (10,), ())
    pending = StateChanged(RequestState.PENDING, PendingReason.PRIORITY, (), (10,))
    m.event("s1", "ide", 1, installed, True)
    m.event("s2", "tracer", 2, installed, True)
    m.event("s1", "ide", 1, Displaced((10,), 2, "tracer", 50), True)
    m.event("s1", "ide", 1, pending, True)
    m.event("s1", "ide", 1, Restored((10,)), True)
    for queued in (True, True, False):
        m.event("s2", "tracer", 2, _hit(), queued)
    m.event("s2", "tracer", 0, HitsDropped(4), True)
    m.event("s2", "tracer", 2, Removed("client"), True)
    hit = Event(5, 1_000_000_000, 2, _hit())
    m.delivered("s2", "tracer", [hit, Event(6, 0, 2, Restored(()))], 1_003_000_000)
    m.session_closed("s2", "tracer")
    got = _samples(m)
    tracer = (("session", "tracer"), ("session_id", "s2"))
    ide = (("session", "ide"), ("session_id", "s1"))
    assert got[("hwbkpt_hits_total", tracer)] == 2
    assert got[("hwbkpt_hits_dropped_total", tracer)] == 5  # one over the buffer, four lost
    assert got[("hwbkpt_displacements_total", ide)] == 1
    assert got[("hwbkpt_restores_total", ide)] == 1
    assert got[("hwbkpt_sessions", ())] == 1
    assert got[("hwbkpt_requests", (("state", "pending"),))] == 1
    assert got[("hwbkpt_requests", (("state", "installed"),))] == 0
    # 3 ms lands in the 0.005 bucket, and in every one above it.
    assert got[("hwbkpt_trap_to_client_seconds_count", ())] == 1
    assert got[("hwbkpt_trap_to_client_seconds_bucket", (("le", "0.0025"),))] == 0
    assert got[("hwbkpt_trap_to_client_seconds_bucket", (("le", "0.005"),))] == 1
    assert abs(got[("hwbkpt_trap_to_client_seconds_sum", ())] - 0.003) < 1e-9
    assert len(LATENCY_BUCKETS) + 1 == len(
        [k for k in got if k[0] == "hwbkpt_trap_to_client_seconds_bucket"]
    )


def test_slot_gauges_from_the_slot_map() -> None:
    got = _samples(BrokerMetrics())
    assert got[("hwbkpt_slots_used", (("pool", "dr"),))] == 3  # two held, one outside
    assert got[("hwbkpt_traced_threads", ())] == 2  # the CPU context is not a thread
    assert got[("hwbkpt_attached_processes", ())] == 1
