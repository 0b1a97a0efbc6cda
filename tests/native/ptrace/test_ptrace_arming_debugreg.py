"""Debug register arming: DR0-DR3/DR7 through PTRACE_POKEUSER, and a dead broker."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from ptrace_support import entry, kill_broker_mid_run, table

from hwbkptd.arch.ptrace import PtraceMechanism
from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace.arming_debugreg import DebugregArming
from hwbkptd.arch.ptrace.state import Tracee
from hwbkptd.arch.x86_64 import debugreg_offset, encode_dr7
from hwbkptd.core.mechanism import SlotWrite
from hwbkptd.core.model import Access

pytestmark = pytest.mark.native

BASE = 0x10000


@pytest.fixture
def stopped(native_bins: dict[str, str]) -> Iterator[Tracee]:
    """A seized child in a ptrace-stop (PTRACE_INTERRUPT), detached afterwards."""
    proc = subprocess.Popen(["sleep", "30"])
    pt.seize(proc.pid, 0)
    pt.interrupt(proc.pid)
    _, status = os.waitpid(proc.pid, pt.WALL)
    assert status >> 16 == pt.PTRACE_EVENT_STOP
    yield Tracee(proc.pid, proc.pid)
    pt.detach(proc.pid)
    proc.kill()
    proc.wait()


def dr(tid: int, index: int) -> int:
    return pt.peekuser(tid, debugreg_offset(index))


def test_write_programs_the_registers(stopped: Tracee) -> None:
    t = stopped
    arming = DebugregArming()
    a, x = entry(BASE, 8), entry(BASE + 0x100, 1, Access.EXEC)
    assert arming.write(t, table(t.pid, t.tid, 1, a, None, x)) == []
    assert dr(t.tid, 0) == BASE
    assert dr(t.tid, 2) == BASE + 0x100
    assert dr(t.tid, 7) == encode_dr7([a.chunk, None, x.chunk, None]) == t.dr7
    assert {k: s.generation for k, s in t.slots.items()} == {("dr", 0): 1, ("dr", 2): 1}

    # Same chunks: no register is written, the slots take the new generation.
    assert arming.write(t, table(t.pid, t.tid, 2, a, None, x)) == []
    assert {s.generation for s in t.slots.values()} == {2}

    # A pool x86 does not have is refused, the rest is armed.
    w = SlotWrite(t.pid, t.tid, 3, {"dr": (a,), "exec": (x,)})
    refusals = arming.write(t, w)
    assert [(r.pool, r.index, r.generation) for r in refusals] == [("exec", 0, 3)]
    assert dr(t.tid, 7) == encode_dr7([a.chunk])

    arming.clear(t)
    assert dr(t.tid, 7) == 0
    assert t.slots == {}


def test_dead_broker_kills_the_target_with_sigtrap(native_bins: dict[str, str]) -> None:
    """What issue 3 asks to document: the registers outlive the broker."""
    rc, out = kill_broker_mid_run(native_bins["writer"], "debugreg")
    assert (rc, out) == (128 + 5, "")  # died of SIGTRAP at its next hit
    notes = PtraceMechanism("debugreg").info().notes
    assert any("stay armed and the target dies of SIGTRAP" in n for n in notes)
