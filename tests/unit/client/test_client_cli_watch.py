"""hwbkpt.cli._watch against a fake broker: what ``hwbkpt watch`` asks and how it ends."""

from __future__ import annotations

import io
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from hwbkpt import models as m
from hwbkpt.cli._output import Printer
from hwbkpt.cli._parser import build_parser
from hwbkpt.cli._watch import cmd_watch
from hwbkpt.errors import HwbkptError

BP = 7


class _SwampedBroker:
    """A client and its one session on a broker that streams hits without end and, once
    asked to stop, never answers: each call lasts its full deadline, like a broker swamped
    by hits that cannot get to the call (the 60 s of issue 9, item 1)."""

    def __init__(self, signum: int, after: int) -> None:
        self.timeout = 30.0
        self.signum = signum
        self.after = after
        self.seq = 0
        self.watch_kwargs: dict[str, Any] = {}
        #: (call, the client's deadline for it)
        self.calls: list[tuple[str, float]] = []
        self.ended = False
        self._never = threading.Event()

    # --- Client ---
    def open_session(self, name: str) -> _SwampedBroker:
        return self

    # --- Session ---
    def watch(self, address: int | str, **kwargs: Any) -> m.Breakpoint:
        self.watch_kwargs = kwargs
        spec = m.BreakpointSpec(m.Scope.PROCESS, address=0x601040, length=8, pid=1234)
        state = (m.BreakpointState.INSTALLED, m.PendingReason.NONE, (1234,), ())
        return m.Breakpoint(
            BP, "w", spec, *state, chunks=(), hit_count=0, reported_count=0, priority=25
        )

    def next_event(self, timeout: float | None = None) -> m.Event:
        self.seq += 1
        if self.seq == self.after:
            signal.raise_signal(self.signum)
        hit = m.Hit(1234, 1234, 0, 0x401000, 0x601040, m.Access.WRITE, b"\1", b"\0", self.seq, 1)
        return m.Event(self.seq, datetime.now(UTC), BP, hit)

    def _unanswered(self, call: str) -> None:
        # Waits out the deadline it was given (at most 3 s, so a regression fails quickly).
        self.calls.append((call, self.timeout))
        self._never.wait(min(self.timeout, 3.0))
        raise HwbkptError("DEADLINE_EXCEEDED", f"{call}: deadline exceeded")

    def remove(self, breakpoint_id: int) -> None:
        self._unanswered("remove")

    def close(self) -> None:
        self._unanswered("close")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_item1_a_signal_ends_the_watch_even_when_the_broker_does_not_answer(
    signum: int, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = _SwampedBroker(signum, after=50)
    args = build_parser().parse_args(["watch", "--pid", "1234", "0x601040"])
    out = io.StringIO()
    before = signal.getsignal(signum)

    assert cmd_watch(broker, args, Printer(True, out)) == status  # type: ignore[arg-type]

    # The clean-up calls got a short deadline, not the client's 30 s each: both fit in the
    # two seconds a user waits after Ctrl-C.
    assert [c for c, _ in broker.calls] == ["remove", "close"]
    assert all(t < 1.0 for _, t in broker.calls), broker.calls
    assert "did not confirm the removal (DEADLINE_EXCEEDED)" in capsys.readouterr().err
    # Nothing after the signal was printed: the state, then the hits read before it.
    assert len(out.getvalue().splitlines()) == 1 + 50
    assert signal.getsignal(signum) == before


class _QuietBroker(_SwampedBroker):
    """No hits at all; every call answered."""

    def next_event(self, timeout: float | None = None) -> None:  # type: ignore[override]
        return None

    def remove(self, breakpoint_id: int) -> None:
        self.calls.append(("remove", self.timeout))

    def close(self) -> None:
        self.calls.append(("close", self.timeout))


def test_item1_count_is_sent_to_the_broker_as_stop_after() -> None:
    """The broker counts (``stop_after``), so hits in flight past N are never reported."""
    broker = _QuietBroker(signal.SIGINT, after=0)
    argv = ["watch", "--pid", "1234", "0x601040", "--count", "8", "--timeout", "0.01"]
    args = build_parser().parse_args(argv)
    assert cmd_watch(broker, args, Printer(True, io.StringIO())) == 0  # type: ignore[arg-type]
    assert broker.watch_kwargs["stop_after"] == 8
    assert broker.calls == [("remove", 30.0), ("close", 30.0)]
