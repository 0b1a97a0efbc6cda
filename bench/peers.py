"""The peers hwbkpt is compared with, run on the same target (bench/target_loop.c).

- gdb: ``watch`` on the variable with a silent ``continue`` (what a gdb user gets);
- ``perf stat -e mem:ADDR/8:w``: counts the traps without reporting them, the physical
  limit for anything that reports every hit;
- ``perf record -e mem:ADDR/8:w -c 1``: one sample per write into a ring buffer, the
  reference for non-stop mode, with lost samples counted.

perf needs the address on its command line before the target starts, so these targets
run with address randomization off (personality ADDR_NO_RANDOMIZE) and the address is
read from a first run; the target prints it again and a mismatch is an error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench._support import ToolMissing, build, no_aslr, workdir

__all__ = ["fixed_address", "gdb_watch", "perf_record", "perf_stat"]

_GDB_SCRIPT = """\
set pagination off
set confirm off
break main
run {n} < /dev/null
watch *(unsigned long *)&watched
commands
silent
continue
end
python import time; _bench_t0 = time.monotonic()
continue
python print("BENCH_SECONDS %.6f" % (time.monotonic() - _bench_t0))
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed")
    return path


def fixed_address(program: Path) -> int:
    """The watched variable's address in ``program`` run without address randomization."""
    proc = subprocess.run(
        [str(program), "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        preexec_fn=no_aslr,
        check=True,
    )
    return int(proc.stdout.splitlines()[0], 16)


def _check_address(stdout: str, address: int) -> None:
    lines = stdout.splitlines()
    if not lines or int(lines[0], 16) != address:
        raise RuntimeError(f"the target moved (expected {address:#x}); is ASLR forced on?")


def gdb_watch(n: int) -> dict[str, Any]:
    """gdb's hardware watchpoint with ``silent``/``continue``: hits per second over N writes.

    The time runs from the ``continue`` that starts the loop to the target's exit,
    measured inside gdb (its start-up and symbol loading are not counted).
    """
    gdb = _tool("gdb")
    program = build().target_loop
    script = workdir() / "watch.gdb"
    script.write_text(_GDB_SCRIPT.format(n=n))
    proc = subprocess.run(
        [gdb, "-batch", "-nx", "-x", str(script), str(program)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    seconds = re.search(r"BENCH_SECONDS ([0-9.]+)", out)
    if "Hardware watchpoint" not in out or f"done {n}" not in out or seconds is None:
        tail = "\n".join(out.splitlines()[-8:])
        raise RuntimeError(f"gdb run did not complete as expected:\n{tail}")
    secs = float(seconds.group(1))
    return {"writes": n, "seconds": secs, "hits_per_s": n / secs}


def _perf_stat_once(perf: str, program: Path, address: int, n: int) -> tuple[int, float]:
    event = f"mem:{address:#x}/8:w"
    proc = subprocess.run(
        [perf, "stat", "-x,", "-e", f"duration_time,{event}", "--", str(program), str(n)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        preexec_fn=no_aslr,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise ToolMissing(f"perf stat failed: {proc.stderr.strip()[-200:]}")
    _check_address(proc.stdout, address)
    count, duration_ns = -1, -1.0
    for line in proc.stderr.splitlines():
        fields = line.split(",")
        if len(fields) < 3:
            continue
        if fields[2].startswith("duration_time"):
            duration_ns = float(fields[0])
        elif fields[2].startswith("mem:"):
            if not fields[0].isdigit():
                raise ToolMissing(f"perf cannot count breakpoint events here: {fields[0]}")
            count = int(fields[0])
    if count < 0 or duration_ns < 0:
        raise RuntimeError(f"unexpected perf stat output:\n{proc.stderr}")
    return count, duration_ns / 1e9


def perf_stat(n: int) -> dict[str, Any]:
    """Traps per second counted by ``perf stat`` over N writes.

    The whole command's duration includes starting the program, so a run of one write
    is subtracted (both its traps and its time).
    """
    perf = _tool("perf")
    program = build().target_loop
    address = fixed_address(program)
    base_count, base_secs = _perf_stat_once(perf, program, address, 1)
    count, secs = _perf_stat_once(perf, program, address, n)
    traps = count - base_count
    seconds = max(secs - base_secs, 1e-9)
    return {
        "writes": n,
        "traps": traps,
        "counted": count,
        "seconds": seconds,
        "traps_per_s": traps / seconds,
    }


_LOST = re.compile(r"PERF_RECORD_LOST(?:_SAMPLES)?\b.*?lost (\d+)")


def perf_record(n: int) -> dict[str, Any]:
    """``perf record -c 1`` on N writes: samples per second (first to last sample), lost."""
    perf = _tool("perf")
    program = build().target_loop
    address = fixed_address(program)
    data = workdir() / f"perf-{time.monotonic_ns()}.data"
    event = f"mem:{address:#x}/8:w"
    try:
        argv = [perf, "record", "-q", "-e", event, "-c", "1", "-o", str(data)]
        proc = subprocess.run(
            [*argv, "--", str(program), str(n)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            preexec_fn=no_aslr,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise ToolMissing(f"perf record failed: {proc.stderr.strip()[-200:]}")
        _check_address(proc.stdout, address)
        script = subprocess.run(
            [perf, "script", "-i", str(data), "-F", "time", "--ns"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        times = [float(t.rstrip(":")) for t in script.stdout.split()]
        stats = subprocess.run(
            [perf, "report", "-i", str(data), "--stats"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lost = 0
        if re.search(r"LOST(?:_SAMPLES)? events:\s+[1-9]", stats.stdout):
            dump = subprocess.run(
                [perf, "report", "-i", str(data), "-D"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            lost = sum(int(m) for m in _LOST.findall(dump.stdout))
    finally:
        data.unlink(missing_ok=True)
        Path(f"{data}.old").unlink(missing_ok=True)
    if len(times) < 2:
        raise RuntimeError(f"perf record wrote {len(times)} samples for {n} writes")
    seconds = max(times[-1] - times[0], 1e-9)
    return {
        "writes": n,
        "samples": len(times),
        "lost": lost,
        "seconds": seconds,
        "samples_per_s": (len(times) - 1) / seconds,
    }
