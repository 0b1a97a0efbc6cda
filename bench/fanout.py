"""Figure 6: fan-out — 100 sessions sharing one slot (issue 5).

The clock target (bench/clock_target.c) writes a variable 1,000 times per second for a
few seconds; 100 sessions (over 4 client channels in this process) each watch the same
8 bytes for writes, so the arbiter gives them one shared slot (checked in the slot
map). Every session must receive every hit; the broker's CPU (utime + stime from
/proc/PID/stat of the hwbkptd process, from the first write until every session has
every hit) is reported, and so is the delivery latency (now - the hit's own timestamp)
across all sessions.

Reference, in the same run: the same measurement with one session.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import hwbkpt
from bench._broker import Broker, BrokerUnavailable
from bench._clock import quantiles_us
from bench._stream import collect, open_watch
from bench._support import build, fmt_us, missing_row, ratio, row, spread
from bench._target import Target

__all__ = ["fanout_run", "run"]

RATE = 1000
SESSIONS = 100
SESSIONS_PER_CHANNEL = 25


def _slots_used(slot_map: hwbkpt.SlotMap, pid: int) -> tuple[int, int]:
    """(slots holding a chunk, most holders on one slot) over the process's threads."""
    used, holders = 0, 0
    for thread in slot_map.threads:
        if thread.pid != pid:
            continue
        for slot in thread.slots:
            if slot.chunk is not None:
                used = max(used, slot.index + 1)
                holders = max(holders, len(slot.holders))
    return used, holders


async def _fanout(broker: Broker, target: Target, n: int, sessions: int) -> dict[str, Any]:
    channels = max(1, -(-sessions // SESSIONS_PER_CHANNEL))
    clients = [hwbkpt.AsyncClient(broker.address) for _ in range(channels)]
    try:
        opened: list[hwbkpt.AsyncSession] = []
        for i in range(sessions):
            session, _ = await open_watch(
                clients[i % channels],
                f"bench-fanout-{i}",
                target.pid,
                target.address,
                do_attach=i == 0,
                hit_buffer=n + 1024,
            )
            opened.append(session)
        used, holders = _slots_used(await clients[0].slot_map(target.pid), target.pid)
        cpu0, t0 = broker.cpu_seconds(), time.monotonic()
        target.go()
        results = await asyncio.gather(
            *(collect(s, n, latency=True, timeout=120 + 2 * n / RATE) for s in opened)
        )
        cpu1, t1 = broker.cpu_seconds(), time.monotonic()
    finally:
        for client in clients:
            await client.close()
    latencies = [x for r in results for x in r.latency_ns]
    return {
        "sessions": sessions,
        "slots_used": used,
        "holders": holders,
        "hits_min": min(r.hits for r in results),
        "hits_max": max(r.hits for r in results),
        "dropped": sum(r.dropped for r in results),
        "seconds": t1 - t0,
        "broker_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
        "latency_us": quantiles_us(latencies),
    }


def fanout_run(broker: Broker, n: int, sessions: int) -> dict[str, Any]:
    with Target(build().clock_target, n, RATE) as target:
        result = asyncio.run(_fanout(broker, target, n, sessions))
        target.finish_json()
    return result


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 1 if quick else 3
    runs = 2 if quick else 3
    n = RATE * seconds
    figure = f"fan-out: {SESSIONS} sessions on one slot, {n:,} writes at {RATE:,}/s"
    try:
        broker = Broker("native", "perf").start()
    except BrokerUnavailable as err:
        why = f"hwbkptd --machine native: {err}"
        return {"benchmark": "fanout", "rows": [missing_row(figure, why, "every hit")]}
    many: list[dict[str, Any]] = []
    one: list[dict[str, Any]] = []
    try:
        for _ in range(runs):
            one.append(fanout_run(broker, n, 1))
            many.append(fanout_run(broker, n, SESSIONS))
    finally:
        broker.stop()
    lo = min(r["hits_min"] for r in many)
    hi = max(r["hits_max"] for r in many)
    dropped = sum(r["dropped"] for r in many)
    shared = all(r["slots_used"] == 1 and r["holders"] == SESSIONS for r in many)
    value = f"per session: min {lo:,}, max {hi:,} of {n:,} hits"
    value += f"; {dropped:,} dropped" if dropped else ""
    value += "; 1 slot, 100 holders" if shared else "; **slot not shared**"
    cpu = spread(r["broker_cpu_percent"] for r in many)
    cpu_one = spread(r["broker_cpu_percent"] for r in one)
    p99 = spread(r["latency_us"]["p99"] for r in many)
    p99_one = spread(r["latency_us"]["p99"] for r in one)
    rows = [
        row(
            figure,
            value,
            f"1 session: min {min(r['hits_min'] for r in one):,} of {n:,}",
            f"{lo / n:.2f}",
            "every session gets every hit",
            lo == n and hi == n and dropped == 0 and shared,
        ),
        row(
            "fan-out: broker CPU while writing (% of one CPU)",
            cpu.show(lambda x: f"{x:.0f}", " %"),
            "1 session: " + cpu_one.show(lambda x: f"{x:.0f}", " %"),
            ratio(cpu.median, cpu_one.median),
            "(reported)",
        ),
        row(
            "fan-out: delivery latency p99, all sessions",
            p99.show(fmt_us, " us"),
            "1 session: " + p99_one.show(fmt_us, " us"),
            ratio(p99.median, p99_one.median),
        ),
    ]
    return {
        "benchmark": "fanout",
        "writes": n,
        "runs": runs,
        "sessions": SESSIONS,
        "many": many,
        "one": one,
        "rows": rows,
        "notes": [],
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
