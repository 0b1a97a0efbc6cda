"""Figure 9: names (issue 13 item 7), in a PIE binary with 50,000 symbols made here.

The bench writes a C program with 50,000 global variables (plus the target loop's
``watched``), builds it with -g as PIE and runs it held before its loop. Then:

- resolution of ``watched`` with a fresh resolver (every mapped binary read: the program,
  libc, ld.so), and of another name with the images cached; reference: ``nm -S`` reading
  the same program's symbol table, run in the same moment;
- per-hit symbolization, the cost ``describe_hit`` adds to a hit: cached (an ip and address
  seen before, the usual case) and first-time (each of 2,000 distinct addresses), against
  the broker's whole per-hit time measured below (1 / hits per second);
- NOTIFY hit throughput of a native broker (ptrace, perf arming) with hit words on and
  off (``hwbkptd --no-hit-words``), runs alternating; target: on >= 0.9 of off.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import hwbkpt
from bench._broker import Broker, BrokerUnavailable
from bench._stream import collect, open_watch
from bench._support import (
    ToolMissing,
    fmt_rate,
    fmt_us,
    missing_row,
    ratios,
    row,
    spread,
    workdir,
)
from bench._target import Target
from hwbkptd.core.model import Access, Scope
from hwbkptd.names.resolver import Resolver

__all__ = ["SYMBOLS", "make_program", "run"]

SYMBOLS = 50_000


def make_program(out: Path, symbols: int = SYMBOLS) -> Path:
    """bench/target_loop.c's protocol with ``symbols`` more global variables, PIE, -g."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ToolMissing("gcc is not installed")
    src = out / "many_symbols.c"
    decls = "".join(f"volatile long v{i:05d};\n" for i in range(symbols))
    src.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
        + decls
        + "volatile unsigned long watched;\n"
        "int main(int argc, char **argv)\n{\n"
        "\tunsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 100000;\n"
        '\tchar go;\n\tprintf("%p\\n", (void *)&watched);\n\tfflush(stdout);\n'
        "\tif (read(0, &go, 1) < 0)\n\t\treturn 2;\n"
        "\tfor (unsigned long i = 1; i <= n; i++)\n\t\twatched = i;\n"
        "\tv00001 = 1;\n\treturn 0;\n}\n"
    )
    exe = out / "many_symbols"
    done = subprocess.run(
        [gcc, "-O1", "-g", "-fPIE", "-pie", "-o", str(exe), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gcc failed on {src.name}:\n{done.stderr[-2000:]}")
    return exe


def _resolution(exe: Path, runs: int) -> dict[str, Any]:
    first, cached, nm = [], [], []
    for _ in range(runs):
        with Target(exe, 1) as target:
            t0 = time.perf_counter()
            subprocess.run(["nm", "-S", str(exe)], capture_output=True, check=True)
            nm.append(time.perf_counter() - t0)
            resolver = Resolver()
            t0 = time.perf_counter()
            got = resolver.resolve(Scope.PROCESS, target.pid, "watched", Access.WRITE)
            first.append(time.perf_counter() - t0)
            if got.address != target.address:
                raise RuntimeError(f"watched resolved to {got.address:#x}, not {target.address:#x}")
            t0 = time.perf_counter()
            resolver.resolve(Scope.PROCESS, target.pid, "v25000", Access.WRITE)
            cached.append(time.perf_counter() - t0)
            words = _symbolization(resolver, target.pid, target.address)
            target.go()
            target.finish()
    return {"first": first, "cached": cached, "nm": nm, **words}


def _symbolization(resolver: Resolver, pid: int, watched: int) -> dict[str, float]:
    """Seconds per describe_hit: cached, and first-time over distinct addresses."""
    ip = resolver.resolve(Scope.PROCESS, pid, "main", Access.EXEC).address + 4
    resolver.describe_hit(pid, ip, watched, Access.WRITE)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        resolver.describe_hit(pid, ip, watched, Access.WRITE)
    cached = (time.perf_counter() - t0) / n
    fresh = [
        resolver.resolve(Scope.PROCESS, pid, f"v{i:05d}", Access.WRITE).address + 4
        for i in range(0, SYMBOLS, SYMBOLS // 2000)
    ]
    t0 = time.perf_counter()
    for address in fresh:
        resolver.describe_hit(pid, ip, address, Access.WRITE)
    first = (time.perf_counter() - t0) / len(fresh)
    named = resolver.describe_hit(pid, ip, fresh[5], Access.WRITE).address_symbol
    want = f"v{5 * (SYMBOLS // 2000):05d}+0x4"
    if named != want:
        raise RuntimeError(f"symbolized {fresh[5]:#x} as {named!r}, not {want}")
    return {"hit_cached_s": cached, "hit_first_s": first}


async def _hits(address: str, exe: Path, n: int) -> float:
    with Target(exe, n) as target:
        async with hwbkpt.AsyncClient(address) as client:
            session, _ = await open_watch(
                client, "bench-names", target.pid, target.address, hit_buffer=n + 1024
            )
            target.go()
            got = await collect(session, n, check=lambda i, value: i == value, limit=300)
        target.finish()
    if got.hits < n * 0.99:
        raise RuntimeError(f"only {got.hits} of {n} hits arrived")
    return got.rate


def _throughput(exe: Path, runs: int, n: int) -> tuple[list[float], list[float]]:
    on: list[float] = []
    off: list[float] = []
    with (
        Broker("native", "perf", "--notify", "ptrace") as with_words,
        Broker("native", "perf", "--notify", "ptrace", "--no-hit-words") as without,
    ):
        for _ in range(runs):
            on.append(asyncio.run(_hits(with_words.address, exe, n)))
            off.append(asyncio.run(_hits(without.address, exe, n)))
    return on, off


def run(quick: bool = False) -> dict[str, Any]:
    out = workdir() / "names"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    exe = make_program(out)
    build_s = time.perf_counter() - t0
    res = _resolution(exe, 2 if quick else 3)
    first, cached, nm = spread(res["first"]), spread(res["cached"]), spread(res["nm"])
    rows = [
        row(
            "first resolution (all mapped binaries read)",
            first.show(lambda s: f"{s * 1e3:.0f}", " ms"),
            "nm -S: " + nm.show(lambda s: f"{s * 1e3:.0f}", " ms"),
            ratios(res["first"], res["nm"]).show(lambda r: f"{r:.1f}"),
        ),
        row(
            "cached resolution (another name)",
            cached.show(lambda s: f"{s * 1e6:.0f}", " µs"),
            "first: " + first.show(lambda s: f"{s * 1e3:.0f}", " ms"),
            ratios(res["cached"], res["first"]).show(lambda r: f"{r:.5f}"),
        ),
    ]
    notes = [
        f"the program has {SYMBOLS:,} global variables (+ watched), -g, PIE; built in "
        f"{build_s:.0f} s",
    ]
    try:
        on, off = _throughput(exe, 2 if quick else 4, 20_000 if quick else 50_000)
    except (BrokerUnavailable, RuntimeError) as err:
        rows.append(missing_row("hit throughput, words on / off", str(err), ">= 0.9"))
        return {"rows": rows, "notes": notes}
    per_hit = 1 / spread(off).median
    cached_cost = float(res["hit_cached_s"])
    rows += [
        row(
            "symbolization per hit, cached",
            fmt_us(cached_cost * 1e6) + " µs",
            f"broker per hit (words off): {fmt_us(per_hit * 1e6)} µs",
            f"{cached_cost / per_hit:.3f}",
        ),
        row(
            "symbolization per hit, first time (2,000 addresses)",
            fmt_us(res["hit_first_s"] * 1e6) + " µs",
            f"broker per hit (words off): {fmt_us(per_hit * 1e6)} µs",
            f"{res['hit_first_s'] / per_hit:.2f}",
        ),
    ]
    r = ratios(on, off)
    rows.append(
        row(
            "NOTIFY hits/s, words on / off",
            spread(on).show(fmt_rate, "/s"),
            spread(off).show(fmt_rate, "/s"),
            r.show(lambda x: f"{x:.2f}"),
            target=">= 0.9",
            met=r.median >= 0.9,
        )
    )
    return {"rows": rows, "notes": notes}
