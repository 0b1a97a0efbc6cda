"""The ptrace tracer's messages reach the sink in order, paced by DeliveryPacing.

Both are pure: no tracer thread, no event loop (issue 10, the tracer by composition).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence

import pytest

from hwbkptd.arch.ptrace.messages import (
    Failed,
    Hits,
    Note,
    Outbox,
    ProcessExec,
    ProcessExited,
    Resolved,
    ThreadExited,
    ThreadStarted,
    deliver,
)
from hwbkptd.arch.ptrace.pacing import (
    BATCH_RATE,
    BATCH_WINDOW,
    BIG_BATCH,
    MAX_BATCH_WINDOW,
    RATE_PERIOD,
    DeliveryPacing,
)
from hwbkptd.core.mechanism import HitReport, Refusal


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.calls.append(("hits", [h.ip for h in hits]))

    def on_hits_lost(self, tid: int, count: int) -> None:
        raise AssertionError("the ptrace mechanism never loses hits")

    def on_thread_started(self, pid: int, tid: int) -> None:
        self.calls.append(("started", pid, tid))

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        self.calls.append(("thread exited", pid, tid, exit_code))

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        self.calls.append(("process exited", pid, exit_code))

    def on_process_exec(self, pid: int) -> None:
        self.calls.append(("exec", pid))

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        raise AssertionError("the tracer sends no refusals")


def hit(i: int) -> HitReport:
    return HitReport(1, 2, "dr", 0, 1, i, 0x2000, i)


def test_issue10_messages_reach_the_sink_in_order_hits_in_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    failed: concurrent.futures.Future[int] = concurrent.futures.Future()
    outbox = Outbox()
    outbox.send(ThreadStarted(1, 2))
    outbox.send(Hits([hit(0), hit(1)]))
    outbox.send(Hits([hit(2)]))
    outbox.note("a line", logging.WARNING)
    outbox.send(Hits([hit(3)]))
    outbox.resolve(done, 7)
    outbox.send(ThreadExited(1, 2, 0))
    outbox.send(ProcessExec(1))
    outbox.fail(failed, RuntimeError("no"))
    outbox.send(ProcessExited(1, 3))
    batch = outbox.take()
    assert outbox.items == []
    with caplog.at_level(logging.WARNING, logger="hwbkptd.ptrace"):
        size = deliver(sink, batch)
    # Four hits and seven other messages; notes and answers do not break a run of hits.
    assert size == 4 + 7
    assert sink.calls == [
        ("started", 1, 2),
        ("hits", [0, 1, 2, 3]),
        ("thread exited", 1, 2, 0),
        ("exec", 1),
        ("process exited", 1, 3),
    ]
    assert done.result() == 7
    assert isinstance(failed.exception(), RuntimeError)
    assert "a line" in caplog.text
    # A future already answered (cancelled by its caller) is left alone.
    late: concurrent.futures.Future[int] = concurrent.futures.Future()
    late.cancel()
    assert deliver(sink, [Resolved(late, 1), Failed(late, RuntimeError())]) == 2
    assert late.cancelled()


def test_issue10_a_sink_error_does_not_stop_the_batch() -> None:
    class Broken(Sink):
        def on_thread_started(self, pid: int, tid: int) -> None:
            raise ValueError("sink bug")

    sink = Broken()
    deliver(sink, [ThreadStarted(1, 2), Note(logging.DEBUG, "x"), ProcessExec(1)])
    assert sink.calls == [("exec", 1)]


def test_issue10_pacing_delivers_at_once_at_a_low_rate() -> None:
    pacing = DeliveryPacing()
    # Two deliveries in quick succession (a HALT hit right after a resume) are no load.
    assert pacing.after_delivery(1, now=10.0) is None
    assert pacing.after_delivery(1, now=10.0001) is None
    assert pacing.after_delivery(BIG_BATCH - 1, now=20.0) is None


def test_issue10_pacing_gathers_big_batches_longer_and_longer() -> None:
    pacing = DeliveryPacing()
    windows = [pacing.after_delivery(BIG_BATCH, now=10.0 + i) for i in range(6)]
    assert windows[0] == 2 * BATCH_WINDOW
    assert windows[-1] == MAX_BATCH_WINDOW
    assert windows == sorted(w for w in windows if w is not None)
    # A small batch sets the window back; an idle window does too.
    pacing.after_delivery(BIG_BATCH // 4 - 1, now=30.0)
    assert pacing.window == BATCH_WINDOW
    pacing.after_delivery(BIG_BATCH, now=40.0)
    assert pacing.window > BATCH_WINDOW
    pacing.went_idle()
    assert pacing.window == BATCH_WINDOW


def test_issue10_pacing_gathers_single_hits_faster_than_the_batch_rate() -> None:
    pacing = DeliveryPacing()
    light = int(BATCH_RATE * RATE_PERIOD)
    # Within one RATE_PERIOD: up to BATCH_RATE a second go at once...
    for i in range(light):
        assert pacing.after_delivery(1, now=5.0 + i * RATE_PERIOD / (2 * light)) is None
    # ...one more is load: the next ones gather for a window.
    assert pacing.after_delivery(1, now=5.0 + RATE_PERIOD / 2) == BATCH_WINDOW
    # A new period counts afresh.
    assert pacing.after_delivery(1, now=5.0 + 2 * RATE_PERIOD) is None
