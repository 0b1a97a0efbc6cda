"""`make bench`: run every benchmark, write bench/results.json and bench/results.md.

Each figure is a ratio to a reference measured in the same run (the machine is
shared and noisy), with the absolute numbers beside it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARKS", "main"]

HERE = Path(__file__).resolve().parent

#: module name -> title; each module has run(quick: bool) -> dict with a "rows" list
#: (and optionally "notes", printed under the table). Numbers are issue 5's figures.
BENCHMARKS: dict[str, str] = {
    "notify_hits": "1. NOTIFY hits/s",
    "nonstop_hits": "2. Non-stop hits/s",
    "latency": "3. Hit latency",
    "halt_rtt": "4. HALT round trip",
    "placement": "5. Placement change cost",
    "fanout": "6. Fan-out",
    "footprint": "7. Footprint",
    "births": "8. Thread birth and death",
    "bpf_notify": "9. NOTIFY through BPF",
    "names": "10. Names (issue 13)",
    "abuse": "11. Memory under abuse (limits)",
}


def _machine() -> dict[str, str]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": str(len(__import__("os").sched_getaffinity(0))),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _markdown(machine: dict[str, str], results: dict[str, Any]) -> str:
    lines = [
        f"Measured {machine['date']} on Linux {machine['kernel']} {machine['machine']}, "
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}; "
        f"`make bench` took {machine.get('elapsed', '?')}.",
        "Values are the median of several runs with (min to max); each ratio is value over "
        "reference, run by run, both measured in the same run.",
        "",
        "| benchmark | figure | ratio to reference | value | reference | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes: list[str] = []
    for name, res in results.items():
        notes += [f"{BENCHMARKS.get(name, name)}: {note}" for note in res.get("notes", [])]
        if "error" in res:
            lines.append(f"| {BENCHMARKS.get(name, name)} | error | | {res['error']} | | | no |")
            continue
        for row in res.get("rows", []):
            lines.append(
                "| {bench} | {figure} | {ratio} | {value} | {reference} | {target} | {met} |".format(  # noqa: E501
                    bench=BENCHMARKS.get(name, name),
                    figure=row.get("figure", ""),
                    ratio=row.get("ratio", ""),
                    value=row.get("value", ""),
                    reference=row.get("reference", ""),
                    target=row.get("target", ""),
                    met={True: "yes", False: "**no**", None: ""}[row.get("met")],
                )
            )
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("only", nargs="*", help="benchmark module names (default: all)")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    machine = _machine()
    results: dict[str, Any] = {}
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: one of {', '.join(BENCHMARKS)}")
    started = time.monotonic()
    for name in names:
        print(f"== {BENCHMARKS.get(name, name)}", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            results[name] = module.run(quick=args.quick)
        except Exception as exc:  # a failing benchmark is reported, the others still run
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["elapsed_s"] = round(time.monotonic() - t0, 1)
        for r in results[name].get("rows", []):
            print(f"   {r.get('figure')}: {r.get('value')} | ref {r.get('reference')}", flush=True)
        print(f"   ({results[name]['elapsed_s']} s)", flush=True)
    quick = " (--quick)" if args.quick else ""
    machine["elapsed"] = f"{time.monotonic() - started:.0f} s{quick}"
    (HERE / "results.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=1, default=str) + "\n"
    )
    table = _markdown(machine, results)
    (HERE / "results.md").write_text(table)
    print(table)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
