"""Figure 9: NOTIFY through the BPF hit program (issue 11 item 6).

``hwbkptd --notify bpf``: a BPF program at each trap reads the value and writes a
record into a BPF ring buffer; the target is never stopped nor traced.

- hits/s: bench/target_loop.c (N writes as fast as it can) watched with a plain NOTIFY
  request, hits received by one ``hwbkpt.AsyncClient`` session, first hit to last;
  references in the same run: the bare trap rate (``perf stat -e mem:ADDR/8:w``) and
  gdb's ``watch`` (silent/continue). Targets: >= 0.8 of the trap rate, >= 10x gdb.
- slowdown: the target's run time (go to exit) with the watch / without, beside the
  same with ``--notify ptrace`` and gdb's (its run time / the bare one).
- latency at 1,000 hits/s (bench/clock_target.c): access to client; p50 <= 150 us,
  p99 <= 1 ms. Also the first session of the fresh broker, before anything else ran on
  it, against the later runs: a first hit used to read the binary on the event loop and
  the stall left the ring on its drain timer for the whole run (p50 about 1 ms).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import hwbkpt
from bench import peers
from bench._broker import Broker, BrokerUnavailable
from bench._clock import broker_clock_run, quantiles_us
from bench._stream import collect, open_watch
from bench._support import (
    ToolMissing,
    build,
    fmt_rate,
    fmt_us,
    missing_row,
    ratio,
    ratios,
    row,
    spread,
)
from bench._target import Target

__all__ = ["run"]

FIGURE = "NOTIFY hits/s, BPF, 1 client"
RATE = 1000


async def _client(address: str, target: Target, n: int, attach: bool) -> dict[str, Any]:
    async with hwbkpt.AsyncClient(address) as client:
        session, _ = await open_watch(
            client, "bench-bpf", target.pid, target.address, do_attach=attach, hit_buffer=n + 1024
        )
        began = time.monotonic()
        target.go()

        def exited() -> float:
            target.finish()
            return time.monotonic() - began

        # The target's own run time, while the client still receives.
        run_s = asyncio.get_running_loop().run_in_executor(None, exited)
        # The n-th hit's value is n (target_loop writes 1..N): exact and in order.
        got = await collect(session, n, check=lambda i, value: i == value, limit=300)
        target_s = await run_s
    return {
        "hits": got.hits,
        "dropped": got.dropped,
        "wrong_values": got.wrong_values,
        "hits_per_s": got.rate,
        "target_s": target_s,
    }


def watched_run(address: str, n: int, attach: bool = False) -> dict[str, Any]:
    """One watched run: hits/s and the target's run time (go to exit)."""
    with Target(build().target_loop, n) as target:
        return asyncio.run(_client(address, target, n, attach))


def bare_run(n: int) -> float:
    with Target(build().target_loop, n) as target:
        began = time.monotonic()
        target.go()
        target.finish()
        return time.monotonic() - began


def run(quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    gdb_n = 2_000 if quick else 20_000
    runs = 2 if quick else 3
    notes: list[str] = []
    try:
        broker = Broker("native", "perf", "--notify", "bpf").start()
    except BrokerUnavailable as err:
        why = f"hwbkptd --machine native --notify bpf: {err}"
        return {"benchmark": "bpf_notify", "rows": [missing_row(FIGURE, why, ">= 0.8")]}
    mine: list[dict[str, Any]] = []
    traps: list[float] = []
    bare: list[float] = []
    lat: list[dict[str, float]] = []
    lost = 0
    try:
        first = broker_clock_run(broker.address, RATE * (1 if quick else 3), RATE)
        lost += first["lost"]
        first_lat = quantiles_us(first["latency_ns"])
        for _ in range(runs):
            try:
                traps.append(peers.perf_stat(n)["traps_per_s"])
            except (ToolMissing, KeyError) as err:
                notes.append(f"perf stat reference unavailable: {err}")
            bare.append(bare_run(n))
            mine.append(watched_run(broker.address, n))
            clock = broker_clock_run(broker.address, RATE * (1 if quick else 3), RATE)
            lost += clock["lost"]
            lat.append(quantiles_us(clock["latency_ns"]))
    finally:
        broker.stop()
    ptrace_runs: list[dict[str, Any]] = []
    try:
        ptrace_broker = Broker("native", "perf", "--notify", "ptrace").start()
        try:
            ptrace_runs = [watched_run(ptrace_broker.address, n, attach=True) for _ in range(runs)]
        finally:
            ptrace_broker.stop()
    except BrokerUnavailable as err:
        notes.append(f"ptrace NOTIFY comparison unavailable: {err}")
    gdb: list[dict[str, Any]] = []
    try:
        gdb = [peers.gdb_watch(gdb_n) for _ in range(runs)]
    except ToolMissing as err:
        notes.append(f"gdb comparison skipped: {err}")
    rates = [m["hits_per_s"] for m in mine]
    got = sum(m["hits"] for m in mine)
    dropped = sum(m["dropped"] for m in mine)
    value = f"{spread(rates).show(fmt_rate, ' /s')}; {got:,} of {n * runs:,} received"
    wrong = sum(m["wrong_values"] for m in mine)
    value += f", {dropped:,} reported dropped, {wrong:,} not the n-th write's value"
    rows: list[dict[str, Any]] = []
    if traps:
        rel = ratios(rates[: len(traps)], traps)
        rows.append(
            row(
                FIGURE,
                value,
                f"bare traps (perf stat): {spread(traps).show(fmt_rate, ' /s')}",
                rel.show(lambda x: f"{x:.2f}"),
                ">= 0.8 of the trap rate",
                rel.median >= 0.8 and got == n * runs and not wrong,
            )
        )
    if gdb:
        gdb_rates = [g["hits_per_s"] for g in gdb]
        rel = ratios(rates[: len(gdb_rates)], gdb_rates)
        rows.append(
            row(
                f"{FIGURE}, vs gdb watch",
                spread(rates).show(fmt_rate, " /s"),
                f"gdb watch: {spread(gdb_rates).show(fmt_rate, ' /s')}",
                rel.show(lambda x: f"{x:.1f}"),
                ">= 10x gdb",
                rel.median >= 10,
            )
        )
    # A bare tight loop's run is mostly its exit, so the ratio is large and loose; what
    # each watched write costs the target (run time over writes) says it plainly.
    slow = ratios([m["target_s"] for m in mine], bare)
    cost = spread(m["target_s"] / n * 1e6 for m in mine)
    value = f"{slow.show(lambda x: f'{x:.0f}x')}; {cost.show(fmt_us, ' us')} per write"
    ref = "no ptrace comparison"
    if ptrace_runs:
        pslow = ratios([m["target_s"] for m in ptrace_runs], bare)
        pcost = spread(m["target_s"] / n * 1e6 for m in ptrace_runs)
        ref = f"--notify ptrace: {pslow.show(lambda x: f'{x:.0f}x')}; {pcost.show(fmt_us, ' us')}"
    if gdb:
        per_write = [g["seconds"] / gdb_n for g in gdb]
        gslow = ratios(per_write, [b / n for b in bare])
        gcost = spread(w * 1e6 for w in per_write)
        ref += f"; gdb watch: {gslow.show(lambda x: f'{x:.0f}x')}; {gcost.show(fmt_us, ' us')}"
    rows.append(row("target slowdown, one NOTIFY watch (BPF)", value, ref))
    for q, target in (("p50", 150.0), ("p99", 1000.0)):
        v = spread(m[q] for m in lat)
        text = v.show(fmt_us, " us") + (f"; **{lost:,} hits lost**" if lost else "")
        rows.append(
            row(
                f"latency {q}, BPF NOTIFY, access to client at {RATE:,}/s",
                text,
                "",
                "",
                f"<= {target:,.0f} us",
                v.median <= target and lost == 0,
            )
        )
    warm = spread(m["p50"] for m in lat)
    rows.append(
        row(
            "latency p50, BPF NOTIFY, a fresh broker's first session",
            fmt_us(first_lat["p50"]) + " us",
            f"later sessions: {warm.show(fmt_us, ' us')}",
            ratio(first_lat["p50"], warm.median),
            "",
        )
    )
    notes.append(
        "The latency target is ptrace-attached by the bench client (attach_process); its "
        "NOTIFY slot is still armed by the BPF program, never by ptrace."
    )
    return {
        "benchmark": "bpf_notify",
        "writes": n,
        "runs": mine,
        "trap_rates": traps,
        "bare_seconds": bare,
        "ptrace_runs": ptrace_runs,
        "gdb_runs": gdb,
        "latency_us": lat,
        "first_session_latency_us": first_lat,
        "rows": rows,
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
