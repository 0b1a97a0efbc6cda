"""Figure 2: non-stop hits per second delivered to one client (issue 4 item 7).

The same target as figure 1 (bench/target_loop.c, N writes as fast as it can), watched
with ``nonstop=True``: the perf helper samples every write into a ring buffer, the
target is never stopped and not traced. The rate runs from the first hit received to
the last; hits received, ``HITS_DROPPED`` counts and hits missing are reported.
Target: >= 0.8 of the reference, every lost sample reported.

Reference, in the same run: ``perf record -e mem:ADDR/8:w -c 1`` on the same target,
its samples per second (first to last sample) and its lost samples.

If the broker does not offer non-stop mode the row says "not implemented" (it is read
from the broker's answer to a non-stop request, not assumed).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import hwbkpt
from bench import peers
from bench._broker import Broker, BrokerUnavailable
from bench._stream import collect, open_watch
from bench._support import ToolMissing, build, fmt_rate, missing_row, ratios, row, spread
from bench._target import Target

__all__ = ["NotImplementedByBroker", "broker_run", "run"]

FIGURE = "non-stop hits/s, perf helper, 1 client"


class NotImplementedByBroker(RuntimeError):
    """The broker refused a non-stop request (its message says why)."""


async def _client(address: str, target: Target, n: int) -> dict[str, Any]:
    async with hwbkpt.AsyncClient(address) as client:
        try:
            session, _ = await open_watch(
                client,
                "bench-nonstop",
                target.pid,
                target.address,
                nonstop=True,
                do_attach=False,
                hit_buffer=n + 1024,
            )
        except hwbkpt.HwbkptError as err:
            if err.code in ("FAILED_PRECONDITION", "UNIMPLEMENTED", "INVALID_ARGUMENT"):
                raise NotImplementedByBroker(f"{err.code}: {err.message}") from None
            raise
        target.go()
        got = await collect(session, n, limit=300)
    return {
        "hits": got.hits,
        "dropped": got.dropped,
        "missing": n - got.hits - got.dropped,
        "seconds": got.seconds,
        "hits_per_s": got.rate,
    }


def broker_run(address: str, n: int) -> dict[str, Any]:
    with Target(build().target_loop, n) as target:
        result = asyncio.run(_client(address, target, n))
        target.finish()
    return result


def run(quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    runs = 2 if quick else 3
    notes: list[str] = []
    try:
        broker = Broker("native", "perf", "--notify", "ptrace").start()
    except BrokerUnavailable as err:
        why = f"hwbkptd --machine native: {err}"
        return {"benchmark": "nonstop_hits", "rows": [missing_row(FIGURE, why, ">= 0.8")]}
    mine: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    perf_ok = True
    try:
        for _ in range(runs):
            if perf_ok:
                try:
                    refs.append(peers.perf_record(n))
                except ToolMissing as err:
                    perf_ok = False
                    notes.append(f"perf record comparison skipped: {err}.")
            mine.append(broker_run(broker.address, n))
    except NotImplementedByBroker as err:
        rows = [row(FIGURE, "not implemented", target=">= 0.8 of perf record", met=None)]
        notes.append(f"The broker refused a non-stop watch: {err}")
        return {"benchmark": "nonstop_hits", "rows": rows, "notes": notes}
    finally:
        broker.stop()
    rates = [m["hits_per_s"] for m in mine]
    dropped = sum(m["dropped"] for m in mine)
    missing = sum(m["missing"] for m in mine)
    value = spread(rates).show(fmt_rate, " /s")
    value += f"; {sum(m['hits'] for m in mine):,} of {n * runs:,} received, {dropped:,} reported"
    value += " dropped"
    if missing:
        value += f", **{missing:,} missing without a report**"
    if len(refs) != len(mine):
        rows = [row(FIGURE, value, "perf record not available", target=">= 0.8", met=None)]
        return {"benchmark": "nonstop_hits", "runs": mine, "rows": rows, "notes": notes}
    ref_rates = [r["samples_per_s"] for r in refs]
    lost = sum(r["lost"] for r in refs)
    rel = ratios(rates, ref_rates)
    rows = [
        row(
            FIGURE,
            value,
            f"perf record -c 1: {spread(ref_rates).show(fmt_rate, ' /s')}, {lost:,} lost",
            rel.show(lambda x: f"{x:.2f}"),
            ">= 0.8 of perf record, every loss reported",
            rel.median >= 0.8 and missing == 0,
        )
    ]
    return {
        "benchmark": "nonstop_hits",
        "writes": n,
        "runs": mine,
        "reference_runs": refs,
        "rows": rows,
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1, default=str))
