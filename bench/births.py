"""Figure 8: thread birth and death under many kernel requests (issue 9 item 10).

The broker itself (its arbiter, commit and sessions, on the simulated x86 machine)
runs on this process's event loop with the daemon's collector settings; no gRPC.
100 sessions set 4 kernel requests each (400, random preset priorities), then one
process gains 1,023 threads one at a time (1,024 with its first) and loses them again,
the way a native process's clones and exits reach the broker: one callback each.
A birth or death is timed from the mechanism's callback until the broker has armed
the new placement and told the sessions (``Broker.settle``). Meanwhile a ticker on
the same loop asks to run every millisecond; how late it ran is the loop's stall.
Last, the issue's own case: one SpawnProcess of 1,024 threads, through the sim
service's handler (called directly), and the longest stall while it runs.

Cases: *distinct* (every request on its own address, so 4 are admitted and 396 wait)
and *shared* (the 100 sessions watch the same 4 addresses: all 400 are admitted and
every one of them gains each new thread, the most a birth has to tell).
Reference: the same births and deaths with no request at all. Three runs (two with
``--quick``, and 256 threads), the cases alternating; median (min to max).

Run: ``.venv/bin/python -m bench.births [--quick]`` prints JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import sys
import time
from collections.abc import Iterator
from typing import Any, cast

from bench._support import fmt_us, percentile, ratios, row, spread
from hwbkpt.v1.sim_pb2 import SpawnProcessRequest
from hwbkptd.api.sim_service import SimService
from hwbkptd.api.status import Context
from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.broker import BreakpointSpec, Broker, BrokerConfig, Identity
from hwbkptd.core.model import Access, Scope
from hwbkptd.daemon.logging import configure as configure_logging
from hwbkptd.daemon.main import tune_gc

__all__ = ["run", "scenario"]

SESSIONS = 100
PER_SESSION = 4
THREADS = 1024
KERNEL_BASE = 0xFFFF_FFFF_8200_0000
PRIORITIES = (10, 25, 50, 75)
TICK = 0.001
TARGET_P99_US = 1000.0
TARGET_STALL_US = 10_000.0
#: No request (the reference), 400 on distinct addresses, 400 on the same 4.
CASES = ("none", "distinct", "shared")


class _Ticker:
    """Asks the loop to run it every TICK seconds and keeps the worst lateness."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, loop.time() - due)

    def start(self) -> None:
        self.worst = 0.0
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst


@contextlib.contextmanager
def _timed(into: list[tuple[float, float]]) -> Iterator[None]:
    """Append (wall, CPU) microseconds of the block; CPU time ignores the preemptions a
    shared machine inflicts, so a wall figure far above it says the machine was busy."""
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    yield
    into.append(((time.perf_counter_ns() - wall) / 1000.0, (time.thread_time_ns() - cpu) / 1000.0))


def _summary(kind: str, samples: list[tuple[float, float]]) -> dict[str, float]:
    wall = [w for w, _ in samples]
    cpu = [c for _, c in samples]
    return {
        f"{kind}_p50_us": round(percentile(wall, 0.5), 1),
        f"{kind}_p99_us": round(percentile(wall, 0.99), 1),
        f"{kind}_max_us": round(max(wall), 1),
        f"{kind}_cpu_p99_us": round(percentile(cpu, 0.99), 1),
    }


async def _set_requests(broker: Broker, case: str, rng: random.Random) -> None:
    for s in range(SESSIONS):
        token = broker.open_session(f"bench-births-{s}", identity=Identity()).token
        for k in range(PER_SESSION):
            slot = k if case == "shared" else s * PER_SESSION + k
            spec = BreakpointSpec(
                Scope.KERNEL,
                KERNEL_BASE + 8 * slot,
                8,
                Access.WRITE,
                priority=rng.choice(PRIORITIES),
            )
            await broker.set_breakpoint(token, spec)


async def _scenario(case: str, threads: int) -> dict[str, Any]:
    layout = parse_layout("sim")
    sim = SimMechanism(layout.arch, layout.pools)
    broker = Broker(
        arch=layout.arch,
        pools=layout.pools,
        mechanism=sim,
        config=BrokerConfig(machine=layout.machine, lease_seconds=3600.0),
    )
    await broker.start()
    try:
        if case != "none":
            await _set_requests(broker, case, random.Random(9))
        pid, _tids = sim.spawn_process(1)
        if case == "watched":
            token = broker.open_session("bench-births-process", identity=Identity()).token
            for k in range(PER_SESSION):
                spec = BreakpointSpec(Scope.PROCESS, 0x601000 + 8 * k, 8, Access.WRITE, pid=pid)
                await broker.set_breakpoint(token, spec)
        await broker.finish_background_work()
        admitted = sum(1 for bp in broker.slot_map().waiting if bp.spec.scope is Scope.KERNEL)
        gc.collect()
        ticker = _Ticker()
        ticker.start()
        births: list[tuple[float, float]] = []
        tids: list[int] = []
        for _ in range(threads - 1):
            with _timed(births):
                tids.append(sim.spawn_thread(pid))
                await broker.finish_background_work()
        deaths: list[tuple[float, float]] = []
        for tid in tids:
            with _timed(deaths):
                sim.end_thread(tid)
                await broker.finish_background_work()
        stall = await ticker.stop() * 1e6
        # The issue's own case: SpawnProcess of 1,024 threads in one call.
        ticker.start()
        t0 = time.perf_counter_ns()
        service = SimService(broker, sim)
        await service.SpawnProcess(SpawnProcessRequest(threads=threads), cast(Context, None))
        await broker.finish_background_work()
        spawn_ms = (time.perf_counter_ns() - t0) / 1e6
        spawn_stall = await ticker.stop() * 1e6
    finally:
        await broker.stop()
    return {
        "case": case,
        "kernel_requests": 0 if case == "none" else SESSIONS * PER_SESSION,
        "waiting": admitted,
        "threads": threads,
        **_summary("birth", births),
        **_summary("death", deaths),
        "stall_max_us": round(stall, 1),
        "spawn_process_ms": round(spawn_ms, 1),
        "spawn_process_stall_us": round(spawn_stall, 1),
    }


def scenario(case: str, threads: int = THREADS) -> dict[str, Any]:
    """One case ("none", "distinct" or "shared") on a fresh broker and event loop."""
    return asyncio.run(_scenario(case, threads))


def _p(results: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in results]


def _figure(
    runs: list[dict[str, Any]], refs: list[dict[str, Any]], key: str, show: str
) -> tuple[str, str, str]:
    """(value, reference, ratio) texts of one measure over the runs, run by run."""
    value, reference = spread(_p(runs, key)), spread(_p(refs, key))
    return (
        f"{show} {value.show(fmt_us)} us",
        f"no requests: {reference.show(fmt_us)} us",
        ratios(_p(runs, key), _p(refs, key)).show(lambda x: f"{x:.1f}"),
    )


def _rows(by_case: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    refs = by_case["none"]
    rows: list[dict[str, Any]] = []
    for case, runs in by_case.items():
        if case == "none":
            continue
        first = runs[0]
        installed = first["kernel_requests"] - first["waiting"]
        what = f"{first['threads']:,} threads x {first['kernel_requests']} kernel requests"
        for kind in ("birth", "death"):
            value, reference, ratio_text = _figure(runs, refs, f"{kind}_p99_us", "p99")
            p99 = spread(_p(runs, f"{kind}_p99_us")).median
            p50 = spread(_p(runs, f"{kind}_p50_us")).median
            cpu = spread(_p(runs, f"{kind}_cpu_p99_us")).median
            rows.append(
                row(
                    f"thread {kind}: {what}, {case} ({installed} installed)",
                    f"{value}; p50 {fmt_us(p50)} us; CPU time p99 {fmt_us(cpu)} us",
                    reference,
                    ratio_text,
                    "p99 <= 1,000 us",
                    p99 <= TARGET_P99_US,
                )
            )
        value, reference, ratio_text = _figure(runs, refs, "stall_max_us", "longest")
        stall = spread(_p(runs, "stall_max_us")).high
        rows.append(
            row(
                f"event-loop stall during those births and deaths: {what}, {case}",
                value,
                reference,
                ratio_text,
                "<= 10,000 us",
                stall <= TARGET_STALL_US,
            )
        )
        value, reference, ratio_text = _figure(runs, refs, "spawn_process_stall_us", "longest")
        spawn = spread(_p(runs, "spawn_process_stall_us"))
        took = spread(_p(runs, "spawn_process_ms")).median
        rows.append(
            row(
                f"event-loop stall during one SpawnProcess of {first['threads']:,} threads: "
                f"{first['kernel_requests']} kernel requests, {case}",
                f"{value} (the call took {took:,.0f} ms)",
                reference,
                ratio_text,
                "<= 10,000 us",
                spawn.high <= TARGET_STALL_US,
            )
        )
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    # The daemon's collector settings (the figure is the daemon's cost); its log quiet.
    tune_gc()
    configure_logging("json", "warning")
    threads = 256 if quick else THREADS
    runs = 2 if quick else 3
    by_case: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    for _ in range(runs):
        for case in CASES:  # alternated, so that each case sees the same machine
            by_case[case].append(scenario(case, threads))
    return {
        "benchmark": "births",
        "unit": "microseconds per thread birth or death, callback to placement armed and told",
        "target": "p99 <= 1 ms; longest event-loop stall <= 10 ms",
        "python": sys.version.split()[0],
        "results": by_case,
        "rows": _rows(by_case),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
