"""Issue 9 item 10: what a thread birth or death costs does not grow with the world.

The work is counted, not timed (the timing is bench/births.py): first-fit scans,
full passes, and the requests whose state the arbiter evaluates. A birth scans at
most the new thread and evaluates only the requests it can change (the thread's
user requests and the admitted kernel requests); a full pass scans once per kind
of context, not once per thread.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from hwbkptd.core import placement
from hwbkptd.core.arbiter import Arbiter
from hwbkptd.core.model import Access, Chunk, Request, RequestState, Scope

KERNEL_BASE = 0xFFFF_FFFF_8200_0000
QUIET_PID = 500  # a process nobody watches: its threads are alike
WATCHED_PID = 600  # a process with one process-scope request


@dataclass
class Work:
    scans: int = 0
    full_passes: int = 0
    states: int = 0

    def reset(self) -> None:
        self.scans = self.full_passes = self.states = 0


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    counted = Work()
    runner_init = placement.Runner.__init__
    # Counting calls of a private step is the point: the test measures work, not results.
    full_pass = Arbiter._full_pass  # noqa: SLF001
    state = Arbiter.state

    def counting_init(self: placement.Runner, *args: object, **kw: object) -> None:
        counted.scans += 1
        runner_init(self, *args, **kw)

    def counting_full_pass(self: Arbiter) -> None:
        counted.full_passes += 1
        full_pass(self)

    def counting_state(self: Arbiter, rid: int) -> tuple[object, object]:
        counted.states += 1
        return state(self, rid)

    monkeypatch.setattr(placement.Runner, "__init__", counting_init)
    monkeypatch.setattr(Arbiter, "_full_pass", counting_full_pass)
    monkeypatch.setattr(Arbiter, "state", counting_state)
    return counted


def _request(rid: int, scope: Scope, address: int, priority: int, pid: int = 0) -> Request:
    return Request(
        id=rid,
        seq=rid,
        session_id=f"s{rid // 4}",
        session_name=f"session-{rid // 4}",
        scope=scope,
        pid=pid,
        tid=0,
        address=address,
        length=8,
        access=Access.WRITE,
        priority=priority,
        chunks=(Chunk("dr", address, 8, Access.WRITE),),
    )


def _kernel_world(shared: bool) -> Arbiter:
    """100 sessions x 4 kernel requests; ``shared``: they all watch the same 4 addresses."""
    rng = random.Random(10)
    arb = Arbiter({"dr": 4})
    for rid in range(1, 401):
        slot = (rid - 1) % 4 if shared else rid
        arb.add_request(
            _request(rid, Scope.KERNEL, KERNEL_BASE + 8 * slot, rng.choice((10, 25, 50, 75)))
        )
    return arb


@pytest.mark.parametrize("shared", [False, True], ids=["distinct", "shared"])
def test_item10_thread_birth_and_death_work_is_that_threads_own(work: Work, shared: bool) -> None:
    arb = _kernel_world(shared)
    admitted = len(arb.admitted())
    assert admitted == (400 if shared else 4)
    arb.add_request(_request(401, Scope.PROCESS, 0x601000, 25, pid=WATCHED_PID))
    for i in range(1024):
        pid = WATCHED_PID if i % 64 == 0 else QUIET_PID
        work.reset()
        delta = arb.add_thread(pid, 1000 + i)
        # Only the new thread is scanned (its siblings' placement is reused), nothing
        # is admitted again, and only the requests that gain the thread are evaluated.
        assert work.full_passes == 0
        assert work.scans <= 1
        assert work.states <= 2 * (1 if pid == WATCHED_PID else 0)
        assert {c.request_id for c in delta.changes} <= arb.admitted() | {401}
        assert [t.tid for t in delta.rewrites] == [1000 + i]
    assert len(arb.installed(1)) == (1025 if 1 in arb.admitted() else 0)
    for i in range(1024):
        work.reset()
        arb.remove_thread(1000 + i)
        assert (work.full_passes, work.scans) == (0, 0)
        assert work.states <= 2 * (1 if i % 64 == 0 else 0)
    assert len(arb.admitted()) == admitted


def test_item10_kernel_admission_scans_each_kind_of_thread_once(work: Work) -> None:
    """Adding or removing a kernel request re-admits over every context: with 1,024
    threads of two kinds (an unwatched process's and a watched one's) that is two
    scans plus the CPU context's, not 1,025."""
    arb = _kernel_world(shared=False)
    arb.add_request(_request(401, Scope.PROCESS, 0x601000, 25, pid=WATCHED_PID))
    for i in range(1024):
        arb.add_thread(WATCHED_PID if i % 64 == 0 else QUIET_PID, 1000 + i)
    work.reset()
    delta = arb.add_request(_request(500, Scope.KERNEL, KERNEL_BASE + 8 * 999, 100))
    assert work.full_passes == 1
    assert work.scans <= 2  # the CPU context has the unwatched threads' placement
    assert arb.state(500)[0] is RequestState.INSTALLED
    assert len(delta.rewrites) == 1025  # every context got the new kernel chunk
    work.reset()
    arb.remove_request(500)
    assert (work.full_passes, work.scans) == (1, 2)
