"""hwbkpt.cli._top_view: hit rates over the window, news lines, and the drawn tables."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from rich.console import Console

from hwbkpt import models as m
from hwbkpt.cli._top_view import RATE_WINDOW, TopView, news_text

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _update(hits: dict[int, int], news: tuple[m.SessionNews, ...] = ()) -> m.SlotMapUpdate:
    chunk = m.Chunk("dr", 0x601000, 8, m.Access.WRITE)
    slot = m.Slot("dr", 0, chunk, (m.Holder(7, "ide", 25),))
    kernel = m.ThreadSlots(0, 0, 1, (m.Slot("dr", 0, None, ()),))
    sm = m.SlotMap((m.ThreadSlots(10, 11, 3, (slot,)), kernel), ())
    return m.SlotMapUpdate(sm, hits, {}, news, (("s1", "ide"),), T0)


def test_rate_is_hits_over_the_window() -> None:
    view = TopView(["a"])
    view.apply("a", _update({7: 0}), now=100.0)
    view.apply("a", _update({7: 10}), now=102.0)
    assert view.rate("a", 7, now=102.0) == 5.0  # 10 hits in the 2 s watched so far
    view.apply("a", _update({7: 30}), now=100.0 + RATE_WINDOW + 1)
    # Measured from the last sample at or before the window's start (100 s): 30 in 6 s.
    assert view.rate("a", 7, now=100.0 + RATE_WINDOW + 1) == 30 / (RATE_WINDOW + 1)
    view.apply("a", _update({7: 30}), now=100.0 + 2 * RATE_WINDOW + 2)
    # No hits since: the 102 s and 106 s samples are the baseline now, and the rate decays.
    assert view.rate("a", 7, now=100.0 + 2 * RATE_WINDOW + 2) == 0.0
    assert view.rate("a", 99, now=110.0) == 0.0


def test_news_lines() -> None:
    displaced = m.Event(0, T0, 7, m.Displaced((11, 12), 9, "agent", 75))
    line = news_text("unix:/s", m.SessionNews("s1", "ide", displaced), several=True)
    assert line.endswith("[unix:/s] ide#7 displaced by agent#9(75) in tids 11,12")
    removed = m.Event(0, T0, 7, m.Removed("shutdown"))
    assert news_text("x", m.SessionNews("s1", "ide", removed), False).endswith(
        "ide#7 removed (shutdown)"
    )


def test_render_shows_holders_kernel_and_news() -> None:
    view = TopView(["a"])
    news = (m.SessionNews("s1", "ide", m.Event(0, T0, 7, m.Restored((11,)))),)
    view.apply("a", _update({7: 4}, news), now=1.0)
    out = io.StringIO()
    Console(file=out, width=160).print(view.render(2.0))
    text = out.getvalue()
    assert re.search(r"│ 10 +│ 11 +│ dr0 +│ 0x601000/8 write │ ide#7 +│ 25 +│ 0.0 +│ 4 +│", text), (
        text
    )
    assert any(
        "all CPUs" in line and "kernel" in line and "free" in line for line in text.splitlines()
    ), text
    assert "ide#7 restored in tids 11" in text
    assert "sessions: ide" in text
