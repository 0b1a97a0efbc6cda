"""Figure 3: latency from the access to the client having the event (issue 5).

The clock target (bench/clock_target.c) writes its CLOCK_MONOTONIC time into the
watched variable 1,000 times per second; the broker (ptrace mechanism, perf arming,
NOTIFY) streams each hit to one ``hwbkpt.AsyncClient`` session over a Unix socket, and
the client takes ``clock_gettime_ns(CLOCK_MONOTONIC) - value`` when the event is handed
to it. Targets: p50 <= 200 us, p99 <= 1 ms.

Reference, in the same run: the C ptrace loop (bench/ref_tracer.c, perf arming) on the
same target computes the same difference when it has the trap and the value — the
floor of any tracer that reports through ptrace.
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
TARGETS = {"p50": 200.0, "p99": 1000.0}


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 1 if quick else 3
    runs = 2 if quick else 3
    n = RATE * seconds
    notes: list[str] = []
    try:
        broker = Broker("native", "perf", "--notify", "ptrace").start()
    except BrokerUnavailable as err:
        why = f"hwbkptd --machine native: {err}"
        missing = [
            missing_row(f"latency {q}, access to client", why, f"<= {t:,.0f} us")
            for q, t in TARGETS.items()
        ]
        return {"benchmark": "latency", "rows": missing, "notes": notes}
    mine: list[dict[str, float]] = []
    refs: list[dict[str, float]] = []
    lost = 0
    try:
        for _ in range(runs):
            refs.append(quantiles_us(reference_clock_run(n, RATE)["latency_ns"]))
            result = broker_clock_run(broker.address, n, RATE)
            lost += result["lost"]
            mine.append(quantiles_us(result["latency_ns"]))
    finally:
        broker.stop()
    rows: list[dict[str, Any]] = []
    for q in ("p50", "p99", "max"):
        value = spread(m[q] for m in mine)
        ref = spread(r[q] for r in refs)
        target = TARGETS.get(q)
        text = value.show(fmt_us, " us")
        if q == "p50" and lost:
            text += f"; **{lost:,} of {n * runs:,} hits lost**"
        rows.append(
            row(
                f"latency {q}, access to client ({n:,} hits at {RATE:,}/s)",
                text,
                f"C ptrace loop (ref_tracer.c perf): {ref.show(fmt_us, ' us')}",
                ratios([m[q] for m in mine], [r[q] for r in refs]).show(lambda x: f"{x:.1f}"),
                f"<= {target:,.0f} us" if target else "",
                (value.median <= target and lost == 0) if target else None,
            )
        )
    return {
        "benchmark": "latency",
        "rate_per_s": RATE,
        "hits_per_run": n,
        "runs": runs,
        "broker_us": mine,
        "reference_us": refs,
        "lost": lost,
        "rows": rows,
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
