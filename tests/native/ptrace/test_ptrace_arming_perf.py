"""Perf sigtrap arming: slot rewrites on a live thread, refusals, a dead broker."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from ptrace_support import KILL_ITERATIONS, entry, kill_broker_mid_run, table

from hwbkptd.arch.linux import perf_event as pe
from hwbkptd.arch.ptrace.arming_perf import COOKIE_MAGIC, PerfArming, perf_sigtrap_works
from hwbkptd.arch.ptrace.binding import TRAP_HWBKPT, TRAP_PERF
from hwbkptd.arch.ptrace.state import Tracee

pytestmark = pytest.mark.native


@pytest.fixture
def sleeper(native_bins: dict[str, str]) -> Iterator[Tracee]:
    """A live thread to open events on (perf needs no ptrace stop)."""
    proc = subprocess.Popen(["sleep", "30"])
    yield Tracee(proc.pid, proc.pid)
    proc.kill()
    proc.wait()


BASE = 0x10000


def test_sigtrap_events_work_here(native_bins: dict[str, str]) -> None:
    assert perf_sigtrap_works() == (True, "")


def test_rewrites_keep_reuse_and_replace_events(sleeper: Tracee) -> None:
    arming = PerfArming()
    t = sleeper
    a, b = entry(BASE), entry(BASE + 8)
    assert arming.write(t, table(t.pid, t.tid, 1, a, b)) == []
    fds = {k: s.fd for k, s in t.slots.items()}
    cookies = {k: s.cookie for k, s in t.slots.items()}
    assert len(set(fds.values())) == 2
    assert all(c >> 48 == COOKIE_MAGIC for c in cookies.values())

    # Same chunks, same holders: the events stay and take the new generation.
    assert arming.write(t, table(t.pid, t.tid, 2, a, b)) == []
    assert {k: s.fd for k, s in t.slots.items()} == fds
    assert {s.generation for s in t.slots.values()} == {2}

    # Same chunk, other holders (regions): the event stays, with a new cookie.
    b2 = entry(BASE + 8, regions=((BASE + 8, 8), (BASE + 64, 4)))
    assert arming.write(t, table(t.pid, t.tid, 3, a, b2)) == []
    slot = t.slots[("dr", 1)]
    assert slot.fd == fds[("dr", 1)]
    assert slot.cookie != cookies[("dr", 1)]
    # The old cookie is still known: a trap that raced the rewrite keeps generation 2.
    old = t.cookies[cookies[("dr", 1)]]
    assert old.generation == 2
    assert old.entry == b

    # Another chunk in slot 0: a new event; slot 1 emptied: its event closed.
    c = entry(BASE + 16, 4, regions=((BASE + 16, 4),))
    assert arming.write(t, table(t.pid, t.tid, 4, c, None)) == []
    assert set(t.slots) == {("dr", 0)}
    assert t.slots[("dr", 0)].entry == c
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fds[("dr", 1)])

    assert arming.attribute(t, TRAP_PERF, t.slots[("dr", 0)].cookie) == [t.slots[("dr", 0)]]
    assert arming.attribute(t, TRAP_PERF, 12345) is None  # the target's own sigtrap event
    assert arming.attribute(t, TRAP_HWBKPT, t.slots[("dr", 0)].cookie) is None
    arming.drop(t)
    assert t.slots == {}
    assert t.cookies == {}


def test_slots_held_elsewhere_are_refused_as_external(sleeper: Tracee) -> None:
    t = sleeper
    # Take every slot still free for this thread (other tests may hold some), then
    # give one back: of two slots asked, one fits and one is refused.
    held: list[int] = []
    try:
        while len(held) < 8:
            attr = pe.breakpoint_attr(BASE + 64 + 8 * len(held), 8, pe.HW_BREAKPOINT_W)
            try:
                held.append(pe.perf_event_open(attr, t.tid, -1))
            except OSError:
                break
        assert held, "no breakpoint slot free at all"
        os.close(held.pop())
        arming = PerfArming()
        refusals = arming.write(t, table(t.pid, t.tid, 1, entry(BASE), entry(BASE + 8)))
        assert [(r.index, r.generation, r.reason) for r in refusals] == [(1, 1, "external")]
        assert set(t.slots) == {("dr", 0)}
        arming.drop(t)
    finally:
        for fd in held:
            os.close(fd)


DONE = (0, f"done {KILL_ITERATIONS}\n")


def test_dead_broker_leaves_the_target_running(native_bins: dict[str, str]) -> None:
    for _ in range(3):
        assert kill_broker_mid_run(native_bins["writer"], "perf") == DONE


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("HWBKPT_SOAK") != "1", reason="soak: set HWBKPT_SOAK=1")
def test_dead_broker_twenty_times(native_bins: dict[str, str]) -> None:
    deaths = [kill_broker_mid_run(native_bins["writer"], "perf") for _ in range(20)]
    assert [d for d in deaths if d != DONE] == []
