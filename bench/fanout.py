"""Figure 6: fan-out — 100 sessions sharing one slot (issue 5).

The clock target (bench/clock_target.c) writes a variable 1,000 times per second for a
few seconds; 100 sessions (in 4 client processes of 25) each watch the same
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
import multiprocessing
import resource
import sys
import time
from multiprocessing.connection import Connection
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
#: Client processes the sessions are spread over (one channel each).
WORKERS = 4


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


async def _worker_main(
    address: str, pid: int, watched: int, n: int, first: int, count: int, conn: Connection
) -> None:
    client = hwbkpt.AsyncClient(address)
    try:
        opened = []
        for i in range(first, first + count):
            session, _ = await open_watch(
                client,
                f"bench-fanout-{i}",
                pid,
                watched,
                do_attach=i == 0,
                hit_buffer=n + 1024,
            )
            opened.append(session)
        conn.send("ready")
        # Wait for the go without blocking this loop (the streams are already running).
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        cpu0 = _own_cpu()
        results = await asyncio.gather(
            *(collect(s, n, latency=True, limit=120 + 2 * n / RATE) for s in opened)
        )
        conn.send(
            {
                "hits": [r.hits for r in results],
                "dropped": sum(r.dropped for r in results),
                "latency_ns": [x for r in results for x in r.latency_ns],
                "cpu_s": _own_cpu() - cpu0,
            }
        )
    finally:
        await client.close()


def _worker(
    address: str, pid: int, watched: int, n: int, first: int, count: int, conn: Connection
) -> None:
    """A client process: ``count`` sessions watching the target, read until every hit."""
    asyncio.run(_worker_main(address, pid, watched, n, first, count, conn))


def _fanout(broker: Broker, target: Target, n: int, sessions: int) -> dict[str, Any]:
    # Fresh interpreters (spawn): a forked copy of a process that used gRPC is unsafe.
    ctx = multiprocessing.get_context("spawn")
    workers = max(1, min(WORKERS, sessions))
    per = -(-sessions // workers)
    procs: list[tuple[Any, Connection]] = []
    try:
        for w in range(workers):
            first = w * per
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(broker.address, target.pid, target.address, n, first, per, theirs),
                daemon=True,
            )
            proc.start()
            procs.append((proc, mine))
            if not mine.poll(60) or mine.recv() != "ready":
                raise RuntimeError(f"fan-out worker {w} did not get ready")
        used, holders = asyncio.run(_slot_check(broker.address, target.pid))
        cpu0, t0 = broker.cpu_seconds(), time.monotonic()
        for _, conn in procs:
            conn.send("go")
        target.go()
        results = []
        for _, conn in procs:
            if not conn.poll(180 + 2 * n / RATE):
                raise RuntimeError("a fan-out worker did not report")
            results.append(conn.recv())
        cpu1, t1 = broker.cpu_seconds(), time.monotonic()
    finally:
        for proc, conn in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
    hits = [h for r in results for h in r["hits"]]
    latencies = [x for r in results for x in r["latency_ns"]]
    return {
        "sessions": len(hits),
        "client_processes": workers,
        "slots_used": used,
        "holders": holders,
        "hits_min": min(hits),
        "hits_max": max(hits),
        "dropped": sum(r["dropped"] for r in results),
        "seconds": t1 - t0,
        "broker_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
        "client_cpu_percent": 100 * sum(r["cpu_s"] for r in results) / (t1 - t0),
        "latency_us": quantiles_us(latencies),
    }


async def _slot_check(address: str, pid: int) -> tuple[int, int]:
    async with hwbkpt.AsyncClient(address) as client:
        return _slots_used(await client.slot_map(pid), pid)


def fanout_run(broker: Broker, n: int, sessions: int) -> dict[str, Any]:
    with Target(build().clock_target, n, RATE) as target:
        result = _fanout(broker, target, n, sessions)
        target.finish_json()
    return result


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 1 if quick else 3
    runs = 2 if quick else 3
    n = RATE * seconds
    figure = f"fan-out: {SESSIONS} sessions on one slot, {n:,} writes at {RATE:,}/s"
    try:
        broker = Broker("native", "perf", "--notify", "ptrace").start()
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
    client_cpu = spread(r["client_cpu_percent"] for r in many)
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
            p99.show(fmt_us, " us")
            + f" (the {WORKERS} client processes: {client_cpu.median:.0f} % CPU in all)",
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
