"""hwbkpt.cli._progress: the broker's progress on stderr (issue 14)."""

from __future__ import annotations

import io

from hwbkpt import models as m
from hwbkpt.cli._progress import ProgressDisplay, progress_text


def _attach(done: int, total: int, finished: bool = False) -> m.Progress:
    return m.Progress("attach", 42, "", "", done, total, finished)


def test_not_a_terminal_one_line_per_finished_operation() -> None:
    err = io.StringIO()
    shown = ProgressDisplay(err, live=False)
    shown.show(_attach(64, 2001))
    shown.show(_attach(1000, 2001))
    assert err.getvalue() == ""
    shown.show(_attach(2001, 2001, True))
    shown.show(m.Progress("resolve", 42, "/bin/big", "symbols", 3 << 20, 3 << 20, True))
    shown.close()
    assert err.getvalue().splitlines() == [
        "hwbkpt: attached pid 42: 2001 threads",
        "hwbkpt: read the symbols of /bin/big (3.0 MiB)",
    ]


def test_a_terminal_gets_a_bar_then_the_line() -> None:
    err = io.StringIO()
    shown = ProgressDisplay(err, live=True)
    shown.show(m.Progress("resolve", 42, "/bin/big", "debug info", 1 << 20, 2 << 20, False))
    shown.show(m.Progress("resolve", 42, "/bin/big", "debug info", 2 << 20, 2 << 20, True))
    shown.close()
    text = err.getvalue()
    assert "reading debug info of /bin/big" in text
    assert "1.0 MiB/2.0 MiB" in text
    assert "hwbkpt: read the debug info of /bin/big (2.0 MiB)\n" in text
    assert "2.0 MiB/2.0 MiB" not in text  # the finished one is a line, not a full bar


def test_progress_text() -> None:
    assert progress_text(_attach(3, 3, True)) == "hwbkpt: attached pid 42: 3 threads"
