"""Issue 12: log lines a client can cause come at a bounded rate, with a count of the rest."""

from __future__ import annotations

from hwbkptd.core.clock import ManualClock
from hwbkptd.core.log_limit import SUMMARY_DELAY, LineLimiter, Summary


def _limiter(clock: ManualClock) -> tuple[LineLimiter, list[Summary]]:
    summaries: list[Summary] = []
    return LineLimiter(clock, summaries.append, per_second=2, burst=3), summaries


def test_item12_a_flood_writes_the_burst_then_the_rate_then_one_summary() -> None:
    clock = ManualClock()
    limiter, summaries = _limiter(clock)
    written = sum(limiter.allow("refused A") for _ in range(1000))
    assert written == 3
    assert summaries == []
    clock.advance(SUMMARY_DELAY)  # the summary comes at the latest a second later
    assert summaries == [{"refused A": 997}]
    clock.advance(10)
    assert len(summaries) == 1  # nothing more held back: nothing more said


def test_item12_the_next_line_let_through_brings_the_summary_first() -> None:
    clock = ManualClock()
    limiter, summaries = _limiter(clock)
    for _ in range(3):
        assert limiter.allow("a")
    assert not limiter.allow("a")
    assert not limiter.allow("b")
    clock.advance(0.5)  # one token back, before the summary's timer
    assert limiter.allow("a")
    assert summaries == [{"a": 1, "b": 1}]
    clock.advance(SUMMARY_DELAY)
    assert len(summaries) == 1  # its timer was cancelled


def test_item12_lines_per_second_stay_bounded_over_a_long_flood() -> None:
    clock = ManualClock()
    limiter, summaries = _limiter(clock)
    written = 0
    for _ in range(10_000):  # 1,000 lines a second for 10 s
        written += limiter.allow("x")
        clock.advance(0.001)
    limiter.flush()
    assert written <= 3 + 2 * 10 + 1
    assert sum(sum(s.values()) for s in summaries) + written == 10_000  # every one counted
    # Each summary rides on a line let through, or on the timer when none is: the log
    # got at most twice the rate, not 1,000 lines a second.
    assert written + len(summaries) <= 2 * (3 + 2 * 10 + 1)


def test_item12_without_an_event_loop_the_summary_waits_for_the_next_line() -> None:
    class NoLoop(ManualClock):
        def call_later(self, delay: float, callback: object) -> object:  # type: ignore[override]
            raise RuntimeError("no running event loop")

    clock = NoLoop()
    summaries: list[Summary] = []
    limiter = LineLimiter(clock, summaries.append, per_second=1, burst=1)
    assert limiter.allow("x")
    assert not limiter.allow("x")
    clock.advance(1)
    assert limiter.allow("x")
    assert summaries == [{"x": 1}]
