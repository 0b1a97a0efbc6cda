"""Trap rate of PtraceMechanism against the C reference loop, measured in the same run.

The target (bench/target_loop.c) writes an 8-byte watched variable N times. Rounds
alternate: bench/ptrace_ref.c (the smallest C tracer, same perf sigtrap arming), then
PtraceMechanism (perf arming) with a counting sink in place of the broker. The
mechanism's figure runs from the target's go to the sink learning of its exit, so
every hit has reached the event loop. Also reported: the tracer thread's CPU time per
hit (from /proc/self/task/TID/stat) against the C cycle's wall time per hit.

No pass/fail: this prints medians (min to max) and the ratio, round by round and
best run to best run (on a machine shared with other work, the best runs are the
least disturbed ones). Run it as root:

    .venv/bin/python tests/native/ptrace/trap_rate.py [--writes N] [--rounds R] [--cpu N]
        [--arming perf|debugreg]

``--arming debugreg`` arms DR0/DR7 instead, against bench/ref_tracer.c in debugreg mode.

Placement decides much of the figure. A tracer and its stopped target take turns;
when the scheduler puts them on one CPU each turn is a plain context switch, when
it puts them on two every PTRACE_CONT and every stop wakes the other CPU (in this
VM, an idle vCPU: C reference 13,000-17,000 hits/s instead of 40,000-47,000),
and which it picks changes with whatever else runs. ``--cpu N`` pins each tracer
(the C program, the mechanism's tracer thread) and its target to CPU N, the
placement both are fastest in, and so compares the tracers' own costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The programs are bench/'s, built the way bench/ builds them (its ``build``).
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench._support import Programs, build
from hwbkptd.arch.ptrace import PtraceMechanism
from hwbkptd.core.mechanism import HitReport, Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access, Chunk

__all__ = ["RoundResult", "main", "mechanism_run", "reference_run"]

_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class RoundResult:
    hits: int
    seconds: float
    wrong_values: int
    #: CPU seconds of the tracer thread (mechanism) or -1 (reference).
    tracer_cpu: float = -1.0
    #: The user-space part of ``tracer_cpu`` (the rest is system calls).
    tracer_user: float = -1.0
    #: Context switches of the tracer thread.
    tracer_switches: int = -1

    @property
    def rate(self) -> float:
        return self.hits / self.seconds if self.seconds > 0 else 0.0


def _on_cpu(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def reference_run(
    progs: Programs, n: int, cpu: int | None = None, arming: str = "perf"
) -> RoundResult:
    """The C reference on N writes (it and its target on ``cpu`` when given): ptrace_ref.c
    for perf arming, ref_tracer.c for debugreg arming."""
    if arming == "perf":
        argv = [progs.ptrace_ref, progs.target_loop, str(n)]
    else:
        argv = [progs.ref_tracer, arming, "count", progs.target_loop, str(n)]
    proc = subprocess.run(
        [*_on_cpu(cpu), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return RoundResult(int(got["hits"]), float(got["seconds"]), int(got["wrong_values"]))


class _CountingSink:
    """Counts hits and checks values (the n-th hit carries n); notes the target's exit."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.wrong = 0
        self.exited = asyncio.Event()
        self.exited_at = 0.0

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        for hit in hits:
            self.hits += 1
            if int.from_bytes(hit.values[0], "little") != self.hits:
                self.wrong += 1

    def on_hits_lost(self, tid: int, count: int) -> None:
        raise AssertionError("the ptrace mechanism never loses hits")

    def on_thread_started(self, pid: int, tid: int) -> None:
        pass

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        pass

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        self.exited_at = time.perf_counter()
        self.exited.set()

    def on_process_exec(self, pid: int) -> None:
        pass

    def on_refusals(self, refusals: Sequence[Refusal]) -> None:
        pass


def _thread_cpu(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK


def _thread_switches(native_id: int) -> int:
    """Context switches of a thread so far (voluntary and not)."""
    total = 0
    with open(f"/proc/self/task/{native_id}/status") as f:
        for line in f:
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def _thread_utime(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLOCK_TICK


def _tracer_native_id() -> int:
    for thread in threading.enumerate():
        if thread.name == "hwbkpt-tracer" and thread.native_id is not None:
            return thread.native_id
    raise RuntimeError("no hwbkpt-tracer thread")


def _start_target(progs: Programs, n: int, cpu: int | None) -> tuple[subprocess.Popen[bytes], int]:
    """The target, held before its first write, and its watched variable's address."""
    target = subprocess.Popen(
        [*_on_cpu(cpu), progs.target_loop, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert target.stdout is not None
    return target, int(target.stdout.readline(), 16)


async def mechanism_run(
    mech: PtraceMechanism, sink: _CountingSink, progs: Programs, n: int, cpu: int | None = None
) -> RoundResult:
    """One target, one watch, N writes, through a mechanism started with ``sink``
    (the target and the tracer thread on ``cpu`` when given)."""
    sink.reset()
    target, address = _start_target(progs, n, cpu)
    try:
        assert target.stdin is not None
        await mech.attach(target.pid)
        chunk = Chunk("dr", address, 8, Access.WRITE)
        slots = (SlotEntry(chunk, ((address, 8),)), None, None, None)
        write = SlotWrite(target.pid, target.pid, 1, {"dr": slots})
        refusals = await mech.apply([write])
        assert not refusals, refusals
        tracer = _tracer_native_id()
        if cpu is not None:
            os.sched_setaffinity(tracer, {cpu})
        cpu0 = _thread_cpu(tracer)
        user0 = _thread_utime(tracer)
        switches0 = _thread_switches(tracer)
        t0 = time.perf_counter()
        target.stdin.write(b"g")
        target.stdin.flush()
        await asyncio.wait_for(sink.exited.wait(), 600)
        busy = _thread_cpu(tracer) - cpu0
        user = _thread_utime(tracer) - user0
        switches = _thread_switches(tracer) - switches0
        return RoundResult(sink.hits, sink.exited_at - t0, sink.wrong, busy, user, switches)
    finally:
        if target.poll() is None:
            target.kill()
        # The tracer reaped it already (it is our child): wait() then finds nothing.
        target.wait()


def _spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}} to {max(values):{fmt}})"


async def _measure(
    progs: Programs, n: int, rounds: int, cpu: int | None, arming: str = "perf"
) -> dict[str, object]:
    mech = PtraceMechanism(arming)
    sink = _CountingSink()
    mech.start(sink)
    refs: list[RoundResult] = []
    mine: list[RoundResult] = []
    try:
        await mechanism_run(mech, sink, progs, min(n, 1000), cpu)  # warm-up
        for i in range(rounds):
            ref = await asyncio.to_thread(reference_run, progs, n, cpu, arming)
            got = await mechanism_run(mech, sink, progs, n, cpu)
            refs.append(ref)
            mine.append(got)
            print(
                f"round {i + 1}: C {ref.rate:,.0f} hits/s, mechanism {got.rate:,.0f} hits/s "
                f"(ratio {got.rate / ref.rate:.2f}; tracer CPU "
                f"{got.tracer_cpu / max(got.hits, 1) * 1e6:.1f} us/hit, "
                f"{got.tracer_user / max(got.hits, 1) * 1e6:.1f} of them user, "
                f"{got.tracer_switches / max(got.hits, 1):.2f} switches/hit; "
                f"hits {got.hits}/{n}, wrong values {got.wrong_values})",
                flush=True,
            )
    finally:
        await mech.close()
    ratios = [m.rate / r.rate for m, r in zip(mine, refs, strict=True)]
    summary: dict[str, object] = {
        "arming": arming,
        "writes": n,
        "rounds": rounds,
        "cpu": cpu,
        "c_ref_hits_per_s": statistics.median(r.rate for r in refs),
        "mechanism_hits_per_s": statistics.median(m.rate for m in mine),
        "ratio": statistics.median(ratios),
        "c_us_per_hit": statistics.median(r.seconds / r.hits * 1e6 for r in refs),
        "tracer_cpu_us_per_hit": statistics.median(
            m.tracer_cpu / max(m.hits, 1) * 1e6 for m in mine
        ),
        "all_hits": all(m.hits == n and not m.wrong_values for m in mine),
    }
    best = max(m.rate for m in mine) / max(r.rate for r in refs)
    summary["best_ratio"] = best
    print(f"C reference : {_spread([r.rate for r in refs])} hits/s")
    print(f"mechanism   : {_spread([m.rate for m in mine])} hits/s")
    print(f"ratio       : {_spread(ratios, '.2f')} (round by round); best to best {best:.2f}")
    print(
        f"per hit     : C cycle {summary['c_us_per_hit']:.1f} us wall; "
        f"tracer thread {summary['tracer_cpu_us_per_hit']:.1f} us CPU"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="pin each tracer and its target to this CPU (the event loop stays free)",
    )
    parser.add_argument("--arming", choices=("perf", "debugreg"), default="perf")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON too")
    args = parser.parse_args(argv)
    summary = asyncio.run(_measure(build(), args.writes, args.rounds, args.cpu, args.arming))
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
