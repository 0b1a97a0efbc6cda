"""hwbkptd.core.progress: what of a long operation's raw counts reaches the session
(issue 14), on a manual clock: quiet for small quick work, a first report, at most one per
tenth of the work or per INTERVAL, a last one finished with done == total."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from hwbkptd.core.clock import ManualClock
from hwbkptd.core.events import Progress, ProgressOperation
from hwbkptd.core.progress import (
    ATTACH_MIN_THREADS,
    INTERVAL,
    MIN_SECONDS,
    RESOLVE_MIN_BYTES,
    STEPS,
    ProgressFeed,
    ProgressReporter,
    on_loop,
)


def _attach(clock: ManualClock, sent: list[Progress]) -> ProgressReporter:
    return ProgressReporter(
        sent.append,
        clock,
        operation=ProgressOperation.ATTACH,
        pid=42,
        min_total=ATTACH_MIN_THREADS,
    )


def test_a_small_quick_attach_says_nothing() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    r.update(64, 100)
    clock.advance(MIN_SECONDS / 2)
    r.finish(100)
    assert sent == []


def test_a_large_attach_reports_first_at_most_every_tenth_and_last() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    total = 2000
    # The tracer tells every 64 threads, with no time passing: the tenth-of-the-work
    # rule alone bounds the reports.
    for done in range(64, total, 64):
        r.update(done, total)
    r.finish(total)
    assert sent[0] == Progress(ProgressOperation.ATTACH, 42, "", "", 64, total, False)
    assert sent[-1] == Progress(ProgressOperation.ATTACH, 42, "", "", total, total, True)
    dones = [p.done for p in sent]
    assert dones == sorted(dones)
    assert len(set(dones)) == len(dones)
    # Between two reports before the last, at least a tenth of the work was done.
    steps = [b - a for a, b in itertools.pairwise(dones[:-1])]
    assert all(step >= total // STEPS for step in steps)
    assert len(sent) <= STEPS + 2
    assert [p.finished for p in sent].count(True) == 1


def test_time_lets_a_report_through_before_a_tenth_is_done() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    r.update(10, 10_000)
    r.update(20, 10_000)  # neither a tenth nor INTERVAL later: held back
    assert [p.done for p in sent] == [10]
    clock.advance(INTERVAL)
    r.update(30, 10_000)
    assert [p.done for p in sent] == [10, 30]


def test_a_small_operation_that_runs_long_reports_from_then_on() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    r.update(1, 10)
    assert sent == []
    clock.advance(MIN_SECONDS)
    r.update(2, 10)
    r.finish(10)
    assert [(p.done, p.total, p.finished) for p in sent] == [(2, 10, False), (10, 10, True)]


def test_a_long_operation_without_updates_reports_only_its_end() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    clock.advance(MIN_SECONDS + 1)
    r.finish(3000)
    assert [(p.done, p.total, p.finished) for p in sent] == [(3000, 3000, True)]


def test_done_never_decreases_and_total_only_grows() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    r.update(500, 1000)
    clock.advance(INTERVAL)
    r.update(400, 900)  # a late, smaller count is not told
    clock.advance(INTERVAL)
    r.update(900, 1200)  # threads created meanwhile: total grows
    r.finish(800)  # fewer seized in the end (some exited): done stays
    assert [(p.done, p.total) for p in sent] == [(500, 1000), (900, 1200), (900, 900)]
    assert sent[-1].finished


def test_nothing_after_the_end() -> None:
    clock, sent = ManualClock(), []
    r = _attach(clock, sent)
    r.update(300, 300)
    r.finish(300)
    r.update(301, 400)
    r.finish(400)
    assert [(p.done, p.finished) for p in sent] == [(300, False), (300, True)]


def test_the_feed_finishes_each_part_when_it_is_done() -> None:
    clock, sent = ManualClock(), []
    feed = ProgressFeed(sent.append, clock, pid=7, min_total=RESOLVE_MIN_BYTES)
    big = 2 * RESOLVE_MIN_BYTES
    feed.report("/bin/small", "symbols", 100, 200)
    feed.report("/bin/small", "symbols", 200, 200)
    feed.report("/bin/big", "symbols", big // 2, big)
    feed.report("/bin/big", "symbols", big, big)
    feed.report("/bin/big", "debug info", 10, big)
    feed.close()
    feed.report("/bin/big", "debug info", big, big)  # a worker still going: not told
    assert [(p.module, p.detail, p.done, p.total, p.finished) for p in sent] == [
        ("/bin/big", "symbols", big // 2, big, False),
        ("/bin/big", "symbols", big, big, True),
        ("/bin/big", "debug info", 10, big, False),
        ("/bin/big", "debug info", 10, 10, True),
    ]
    assert {p.operation for p in sent} == {ProgressOperation.RESOLVE}
    assert {p.pid for p in sent} == {7}


@pytest.mark.asyncio
async def test_reports_from_a_worker_thread_arrive_on_the_loop_in_order() -> None:
    loop = asyncio.get_running_loop()
    got: list[tuple[str, int, bool]] = []

    def report(module: str, detail: str, done: int, total: int) -> None:
        got.append((module, done, threading.current_thread() is threading.main_thread()))

    hop = on_loop(loop, report)
    await asyncio.to_thread(lambda: [hop("m", "symbols", i, 100) for i in range(50)])
    assert [g[1] for g in got] == list(range(50))
    assert all(on_main for _, _, on_main in got)
