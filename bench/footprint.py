"""Figure 7: footprint — memory with 1,000 sessions, CPU of an idle broker (issue 5).

Memory: ``hwbkptd --machine sim`` (the sessions and requests cost the same memory on
any machine; the simulated one needs no targets): 1,000 sessions, each with its event
stream open and 10 requests on simulated processes (100 processes of 4 threads;
mixed priorities, so most requests wait). VmRSS of the hwbkptd process is read from
/proc/PID/status. Target <= 100 MB; reference: the RSS of the same broker idle, just
started, in the same run.

CPU: ``hwbkptd --machine native`` with 50 sleeping C processes (bench/sleeper.c)
attached through ``AttachProcess``; utime + stime of hwbkptd over 10 s, in 2 s windows
(median, min, max of the windows; the figure is the whole 10 s). Target < 0.5 %;
reference: the same broker over the same time before anything is attached.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from typing import Any

import hwbkpt
from bench._broker import Broker, BrokerUnavailable
from bench._support import build, missing_row, ratio, row, spread

__all__ = ["idle_cpu", "memory_run", "run"]

SESSIONS = 1000
REQUESTS_PER_SESSION = 10
PROCESSES = 100
SESSIONS_PER_CHANNEL = 100
SLEEPERS = 50
MB = 1024  # KiB per MiB


async def _populate(
    address: str, sessions: int
) -> tuple[list[hwbkpt.AsyncClient], list[hwbkpt.AsyncSession]]:
    """Open the sessions with their streams and set their requests; the clients stay open."""
    channels = max(1, -(-sessions // SESSIONS_PER_CHANNEL))
    clients = [hwbkpt.AsyncClient(address) for _ in range(channels)]
    pids = [(await clients[0].sim_spawn(threads=4)).pid for _ in range(PROCESSES)]
    rng = random.Random(7)
    opened: list[hwbkpt.AsyncSession] = []

    async def one(i: int) -> None:
        client = clients[i % channels]
        session = await client.open_session(f"bench-footprint-{i}")
        opened.append(session)
        for _ in range(REQUESTS_PER_SESSION):
            await session.set_breakpoint(
                scope="process",
                pid=pids[i % PROCESSES],
                address=0x10000 + 8 * rng.randrange(512),
                length=8,
                access="write",
                priority=rng.choice((10, 25, 50, 75)),
            )

    # A few at a time per channel: fast, without one burst of 10,000 calls.
    for start in range(0, sessions, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 50, sessions))))
    return clients, opened


async def _measure(broker: Broker, sessions: int) -> dict[str, Any]:
    idle = broker.rss_kib()
    t0 = time.monotonic()
    clients, opened = await _populate(broker.address, sessions)
    setup = time.monotonic() - t0
    try:
        await asyncio.sleep(1.0)  # let the streams settle and the allocator catch up
        streams = sum(1 for s in opened if not s.ended and not s.closed)
        loaded = broker.rss_kib()
    finally:
        for client in clients:
            await client.close()
    return {
        "sessions": sessions,
        "streams_open": streams,
        "requests": sessions * REQUESTS_PER_SESSION,
        "idle_rss_kib": idle,
        "rss_kib": loaded,
        "setup_s": setup,
    }


def memory_run(sessions: int = SESSIONS) -> dict[str, Any]:
    """One fresh sim broker: idle RSS, then RSS with the sessions in place."""
    with Broker("sim") as broker:
        time.sleep(0.5)
        return asyncio.run(_measure(broker, sessions))


def _sleepers(n: int) -> list[subprocess.Popen[str]]:
    procs = []
    for _ in range(n):
        proc = subprocess.Popen(
            [str(build().sleeper)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # it is running
        procs.append(proc)
    return procs


def _cpu_windows(broker: Broker, seconds: float, windows: int) -> tuple[float, list[float]]:
    """CPU percent of one CPU over ``seconds``, and per window."""
    per: list[float] = []
    start_cpu, start = broker.cpu_seconds(), time.monotonic()
    for _ in range(windows):
        c0, t0 = broker.cpu_seconds(), time.monotonic()
        time.sleep(seconds / windows)
        per.append(100 * (broker.cpu_seconds() - c0) / (time.monotonic() - t0))
    total = 100 * (broker.cpu_seconds() - start_cpu) / (time.monotonic() - start)
    return total, per


async def _attach_all(address: str, pids: list[int]) -> tuple[hwbkpt.AsyncClient, int]:
    """One session attaches every process; the client and how many were attached."""
    client = hwbkpt.AsyncClient(address)
    session = await client.open_session("bench-idle")
    attached = 0
    for pid in pids:
        if await session.attach_process(pid):
            attached += 1
    return client, attached


def idle_cpu(seconds: float) -> dict[str, Any]:
    """The native broker's CPU idle, then idle with 50 attached sleeping processes."""
    windows = max(1, round(seconds / 2))
    with Broker("native", "perf", "--notify", "ptrace") as broker:
        time.sleep(1.0)
        ref_total, ref_windows = _cpu_windows(broker, seconds, windows)
        procs = _sleepers(SLEEPERS)
        loop = asyncio.new_event_loop()
        try:
            client, attached = loop.run_until_complete(
                _attach_all(broker.address, [p.pid for p in procs])
            )
            time.sleep(2.0)  # the attaches' own work is not idle time
            total, per = _cpu_windows(broker, seconds, windows)
            loop.run_until_complete(client.close())
        finally:
            loop.close()
            for proc in procs:
                proc.kill()
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
    return {
        "seconds": seconds,
        "attached": attached,
        "cpu_percent": total,
        "windows": per,
        "idle_cpu_percent": ref_total,
        "idle_windows": ref_windows,
    }


def run(quick: bool = False) -> dict[str, Any]:
    runs = 1 if quick else 3
    seconds = 4.0 if quick else 10.0
    notes = ["Memory is measured on the simulated machine (sessions cost the same anywhere)."]
    mem = [memory_run() for _ in range(runs)]
    rss = spread(m["rss_kib"] / MB for m in mem)
    idle = spread(m["idle_rss_kib"] / MB for m in mem)
    streams = min(m["streams_open"] for m in mem)
    rows = [
        row(
            f"RSS with {SESSIONS:,} sessions x {REQUESTS_PER_SESSION} requests, streams open (sim)",
            rss.show(lambda x: f"{x:.1f}", " MB") + f"; {streams:,} streams",
            "idle broker: " + idle.show(lambda x: f"{x:.1f}", " MB"),
            ratio(rss.median, idle.median),
            "<= 100 MB",
            rss.high <= 100 and streams == SESSIONS,
        )
    ]
    figure = f"idle broker CPU, {SLEEPERS} attached sleeping processes, {seconds:.0f} s"
    try:
        cpu = idle_cpu(seconds)
    except BrokerUnavailable as err:
        rows.append(missing_row(figure, f"hwbkptd --machine native: {err}", "< 0.5 %"))
        cpu = None
    if cpu is not None:
        win = spread(cpu["windows"])
        rows.append(
            row(
                figure,
                f"{cpu['cpu_percent']:.2f} % (2 s windows: {win.low:.2f} to {win.high:.2f}); "
                f"{cpu['attached']} attached",
                f"same broker, nothing attached: {cpu['idle_cpu_percent']:.2f} %",
                ratio(cpu["cpu_percent"], cpu["idle_cpu_percent"]),
                "< 0.5 %",
                cpu["cpu_percent"] < 0.5 and cpu["attached"] == SLEEPERS,
            )
        )
    return {
        "benchmark": "footprint",
        "memory": mem,
        "idle_cpu": cpu,
        "rows": rows,
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
