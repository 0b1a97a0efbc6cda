"""Figure 4: HALT round trip — hit, client resumes, thread runs again (issue 5).

The clock target (bench/clock_target.c) writes its clock into a variable watched with
``action=HALT`` 1,000 times per second and reads the clock again at its next
instruction: the difference is the whole round trip as the thread lives it (the trap,
the broker, the event to the client, the client's ``ResumeThreads`` call, the broker's
PTRACE_CONT). The client resumes each hit's thread as soon as the hit arrives, and
also records the time from the hit's arrival to the resume call's return.
Target: median <= 0.5 ms.

Reference, in the same run: the same target under the C ptrace loop
(bench/ref_tracer.c, perf arming), which continues the thread at once: a C stop and
continue.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench._broker import Broker, BrokerUnavailable
from bench._clock import broker_clock_run, quantiles_us, reference_clock_run
from bench._support import fmt_us, missing_row, ratios, row, spread

__all__ = ["run"]

RATE = 1000
TARGET_US = 500.0


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 1 if quick else 2
    runs = 2 if quick else 3
    n = RATE * seconds
    figure = f"HALT round trip median ({n:,} hits at {RATE:,}/s)"
    try:
        broker = Broker("native", "perf", "--notify", "ptrace").start()
    except BrokerUnavailable as err:
        why = f"hwbkptd --machine native: {err}"
        return {"benchmark": "halt_rtt", "rows": [missing_row(figure, why, "<= 500 us")]}
    mine: list[dict[str, float]] = []
    client: list[dict[str, float]] = []
    refs: list[dict[str, float]] = []
    lost = not_halted = 0
    try:
        for _ in range(runs):
            refs.append(quantiles_us(reference_clock_run(n, RATE)["stall_ns"]))
            result = broker_clock_run(broker.address, n, RATE, action="halt")
            lost += result["lost"]
            not_halted += result["hits"] - result["halted"]
            mine.append(quantiles_us(result["stall_ns"]))
            client.append(quantiles_us(result["resume_ns"]))
    finally:
        broker.stop()
    median = spread(m["p50"] for m in mine)
    p99 = spread(m["p99"] for m in mine)
    value = median.show(fmt_us, " us")
    if lost or not_halted:
        value += f"; **{lost:,} hits lost, {not_halted:,} hits not halted**"
    rows = [
        row(
            figure,
            value,
            "C ptrace stop + cont (ref_tracer.c): "
            + spread(r["p50"] for r in refs).show(fmt_us, " us"),
            ratios([m["p50"] for m in mine], [r["p50"] for r in refs]).show(lambda x: f"{x:.1f}"),
            f"<= {TARGET_US:,.0f} us",
            median.median <= TARGET_US and lost == 0 and not_halted == 0,
        ),
        row(
            "HALT round trip p99",
            p99.show(fmt_us, " us"),
            "C ptrace stop + cont: " + spread(r["p99"] for r in refs).show(fmt_us, " us"),
            ratios([m["p99"] for m in mine], [r["p99"] for r in refs]).show(lambda x: f"{x:.1f}"),
        ),
        row(
            "HALT: hit arrival to ResumeThreads return (client side), median",
            spread(c["p50"] for c in client).show(fmt_us, " us"),
        ),
    ]
    return {
        "benchmark": "halt_rtt",
        "rate_per_s": RATE,
        "hits_per_run": n,
        "runs": runs,
        "round_trip_us": mine,
        "client_resume_us": client,
        "reference_us": refs,
        "rows": rows,
        "notes": [],
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
