"""Helpers for the ptrace mechanism tests: a fake sink, targets, slot tables."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Sequence

from hwbkptd.arch.ptrace import PtraceMechanism
from hwbkptd.core.mechanism import HitReport, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk

__all__ = [
    "FakeSink",
    "Target",
    "entry",
    "proc_state",
    "table",
    "tracer_pid",
    "unblocked",
    "until",
]

# The target's stdin goes to it through fd 3 (a background job's stdin is /dev/null);
# its pid and exit status come back on stderr, its own output on stdout.
_WRAPPER = 'exec 3<&0; "$@" 0<&3 3<&- & echo $! >&2; wait $!; echo "rc=$?" >&2'


def unblocked(bins: dict[str, str], argv: Sequence[str]) -> list[str]:
    """argv run with SIGCHLD unblocked again (the broker's mask passes through exec)."""
    return [bins["unblock"], *argv]


def tracer_pid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("TracerPid:")).split()[1])


def proc_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat (R, S, T, t, Z...)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class Target:
    """A C target started through sh, so the test process is not its parent.

    (A tracer that is also the real parent could have its ptrace stops taken by a
    ``Popen.wait`` in another thread; through sh, the exit status still comes back.)
    """

    def __init__(self, argv: Sequence[str]) -> None:
        unblock = os.path.join(os.path.dirname(argv[0]), "unblock")
        self.sh = subprocess.Popen(
            [unblock, "/bin/sh", "-c", _WRAPPER, "sh", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.sh.stderr is not None
        assert self.sh.stdout is not None
        self.pid = int(self.sh.stderr.readline())
        self.address = int(self.sh.stdout.readline(), 16)

    def go(self) -> None:
        assert self.sh.stdin is not None
        self.sh.stdin.write(b"g")
        self.sh.stdin.flush()

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait for the end: (exit status as sh reports it, the rest of stdout)."""
        out, err = self.sh.communicate(timeout=timeout)
        rc = -1
        for line in err.decode().splitlines():
            if line.startswith("rc="):
                rc = int(line[3:])
        return rc, out.decode()

    def kill(self) -> None:
        if self.sh.poll() is None:
            subprocess.run(["kill", "-9", str(self.pid)], check=False)
            self.sh.kill()
            self.sh.wait()


def entry(
    address: int,
    length: int = 8,
    access: Access = Access.WRITE,
    *,
    halt: bool = False,
    regions: tuple[tuple[int, int], ...] | None = None,
) -> SlotEntry:
    if regions is None:
        regions = () if access is Access.EXEC else ((address, length),)
    return SlotEntry(Chunk("dr", address, length, access), regions, halt)


def table(pid: int, tid: int, generation: int, *entries: SlotEntry | None) -> SlotWrite:
    slots = tuple(entries) + (None,) * (4 - len(entries))
    return SlotWrite(pid, tid, generation, {"dr": slots})


class FakeSink:
    """Records what the mechanism reports; answers new threads with ``auto``'s table."""

    def __init__(self) -> None:
        self.hits: list[HitReport] = []
        self.batches = 0
        self.started: list[tuple[int, int]] = []
        self.thread_exits: list[tuple[int, int, int]] = []
        self.process_exits: list[tuple[int, int]] = []
        self.execs: list[int] = []
        self.refusals: list[Refusal] = []
        self.mech: PtraceMechanism | None = None
        #: (pid, tid) -> the table a new thread gets (an empty one when None).
        self.auto: Callable[[int, int], SlotWrite] | None = None
        self.tasks: list[asyncio.Task[object]] = []

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.batches += 1
        self.hits.extend(hits)

    def on_hits_lost(self, tid: int, count: int) -> None:
        raise AssertionError("the ptrace mechanism never loses hits")

    def on_thread_started(self, pid: int, tid: int) -> None:
        self.started.append((pid, tid))
        if self.mech is not None:
            write = self.auto(pid, tid) if self.auto else table(pid, tid, 1)
            self.tasks.append(asyncio.ensure_future(self._apply(write)))

    async def _apply(self, write: SlotWrite) -> object:
        assert self.mech is not None
        refusals = await self.mech.apply([write])
        self.refusals.extend(refusals)
        return refusals

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        self.thread_exits.append((pid, tid, exit_code))

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        self.process_exits.append((pid, exit_code))

    def on_process_exec(self, pid: int) -> None:
        self.execs.append(pid)

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        self.refusals.extend(refusals)


async def until(cond: Callable[[], bool], seconds: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


#: A broker-like process: arms four watches on a target with PtraceMechanism, says
#: "armed", then says "hits" once 8 hits came, and waits to be killed.
BROKER_SCRIPT = """
import asyncio, sys
from hwbkptd.arch.ptrace import PtraceMechanism
from hwbkptd.core.mechanism import SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk

class Sink:
    hits = 0
    def on_hits(self, hits): Sink.hits += len(hits)
    def __getattr__(self, name): return lambda *args: None

async def main(arming, pid, address):
    mech = PtraceMechanism(arming)
    mech.start(Sink())
    await mech.attach(pid)
    slots = tuple(
        SlotEntry(Chunk("dr", address + 8 * i, 8, Access.WRITE), ((address + 8 * i, 8),))
        for i in range(4)
    )
    assert not await mech.apply([SlotWrite(pid, pid, 1, {"dr": slots})])
    print("armed", flush=True)
    while Sink.hits < 8:
        await asyncio.sleep(0.001)
    print("hits", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


#: Iterations of the kill test's target: four watched writes every 20 ms.
KILL_ITERATIONS = 40


def kill_broker_mid_run(writer: str, arming: str) -> tuple[int, str]:
    """Target writing 4 watched variables; the broker is SIGKILLed while they trap.

    Returns the target's exit status and output. The target writes every 20 ms: a
    thread stopped at a trap the broker has not yet collected (tens of microseconds
    per hit) would get the SIGTRAP delivered when the broker dies (the kernel keeps
    an unreported stop's signal), and this test is about the slots, not that window.
    """
    import sys

    target = Target([writer, str(KILL_ITERATIONS), "20000", "4"])
    broker = subprocess.Popen(
        [sys.executable, "-c", BROKER_SCRIPT, arming, str(target.pid), str(target.address)],
        stdout=subprocess.PIPE,
    )
    try:
        assert broker.stdout is not None
        assert broker.stdout.readline() == b"armed\n"
        target.go()
        assert broker.stdout.readline() == b"hits\n"
        broker.kill()
        broker.wait()
        return target.finish()
    finally:
        broker.kill()
        broker.wait()
        target.kill()
