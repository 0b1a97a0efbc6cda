"""Runs on the clock target (bench/clock_target.c), shared by the latency, HALT and
fan-out benchmarks.

The target writes its CLOCK_MONOTONIC time into the watched variable RATE times per
second, so each hit's value is the moment of its own access, and it measures how long
each write kept it from its next instruction (``stall_ns``). Python's
``time.clock_gettime_ns(CLOCK_MONOTONIC)`` reads the same clock, so ``now - value`` on
receipt is the latency from the access to the client having the event.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import hwbkpt
from bench._stream import collect, open_watch
from bench._support import build, percentile
from bench._target import Target

__all__ = ["broker_clock_run", "quantiles_us", "reference_clock_run"]


def quantiles_us(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99 and max of nanosecond samples, in microseconds."""
    if not samples_ns:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    return {
        "p50": percentile(samples_ns, 0.50) / 1000,
        "p99": percentile(samples_ns, 0.99) / 1000,
        "max": max(samples_ns) / 1000,
        "n": len(samples_ns),
    }


def reference_clock_run(n: int, rate: int, arming: str = "perf") -> dict[str, Any]:
    """The C ptrace loop on the clock target: its latencies, and the target's stalls
    (a C stop + continue)."""
    progs = build()
    argv = [str(progs.ref_tracer), arming, "latency", str(progs.clock_target), str(n), str(rate)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["hits"] != n or not result.get("target"):
        raise RuntimeError(f"reference tracer saw {result['hits']} hits of {n}")
    return {
        "hits": result["hits"],
        "latency_ns": result["latency_ns"],
        "stall_ns": result["target"]["stall_ns"],
    }


async def _client(address: str, target: Target, n: int, action: str) -> dict[str, Any]:
    resume_ns: list[int] = []
    halted = 0
    async with hwbkpt.AsyncClient(address) as client:
        session, _ = await open_watch(
            client, f"bench-{action}", target.pid, target.address, action=action
        )

        async def resume(hit: hwbkpt.Hit) -> None:
            # Hit arrival (as the client sees it) to the resume call's return.
            nonlocal halted
            if not hit.halted:
                return
            halted += 1
            t0 = time.perf_counter_ns()
            await session.resume_threads([hit.tid])
            resume_ns.append(time.perf_counter_ns() - t0)

        target.go()
        got = await collect(
            session,
            n,
            latency=True,
            on_hit=resume if action == "halt" else None,
            limit=60 + 2 * n / 1000,
        )
    return {
        "hits": got.hits,
        "dropped": got.dropped,
        "lost": n - got.hits,
        "halted": halted,
        "latency_ns": got.latency_ns,
        "resume_ns": resume_ns,
    }


def broker_clock_run(address: str, n: int, rate: int, action: str = "notify") -> dict[str, Any]:
    """One session watching the clock target through the broker (NOTIFY or HALT)."""
    with Target(build().clock_target, n, rate) as target:
        result = asyncio.run(_client(address, target, n, action))
        report = target.finish_json()
    result["stall_ns"] = report["stall_ns"]
    return result
