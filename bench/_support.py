"""What every benchmark shares: the C programs, summaries of repeated runs, table rows.

The C programs are compiled once per ``python -m bench`` into a temporary directory
(gcc -O2), so a fresh clone needs nothing built in advance. Every figure is the median
of several runs with the min and max beside it, and a ratio to a reference measured in
the same run.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HERE",
    "PROGRAMS",
    "Programs",
    "Spread",
    "ToolMissing",
    "build",
    "fmt_rate",
    "fmt_us",
    "missing_row",
    "no_aslr",
    "percentile",
    "pinned",
    "ratio",
    "ratios",
    "row",
    "shared_cpu",
    "spread",
    "workdir",
]

HERE = Path(__file__).resolve().parent

#: The C sources in bench/ (ptrace_ref.c and target_loop.c are the ptrace helper's).
PROGRAMS = ("target_loop", "ptrace_ref", "ref_tracer", "clock_target", "sleeper")

_ADDR_NO_RANDOMIZE = 0x0040000


class ToolMissing(RuntimeError):
    """A tool a benchmark needs (gcc, gdb, perf) is not installed; the message says which."""


@dataclass(frozen=True)
class Programs:
    target_loop: Path
    ptrace_ref: Path
    ref_tracer: Path
    clock_target: Path
    sleeper: Path


@functools.cache
def workdir() -> Path:
    """A temporary directory for this run, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="hwbkpt-bench-"))
    # The broker's socket directory must be traversable by the broker (root here anyway).
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def build() -> Programs:
    """Compile the C programs into the run's temporary directory (once)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ToolMissing("gcc is not installed: the targets and references are C programs")
    out = workdir() / "bin"
    out.mkdir(exist_ok=True)
    for name in PROGRAMS:
        src = HERE / f"{name}.c"
        if not src.exists():
            raise ToolMissing(f"{src} is missing")
        proc = subprocess.run(
            [gcc, "-O2", "-Wall", "-o", str(out / name), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gcc failed on {src.name}:\n{proc.stderr}")
    return Programs(*(out / name for name in PROGRAMS))


def shared_cpu() -> int | None:
    """A CPU for runs that put tracer and target on one CPU; None with only one CPU."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0] if len(allowed) > 1 else None


def pinned(cpu: int | None) -> Callable[[], None] | None:
    """preexec_fn: run the child (and whatever it starts) on ``cpu`` only."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def no_aslr() -> None:
    """preexec_fn: turn address randomization off, so a child's addresses are known before
    it starts (perf and gdb name the watched address on their command line)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.personality(_ADDR_NO_RANDOMIZE) == -1:
        raise OSError(ctypes.get_errno(), "personality(ADDR_NO_RANDOMIZE)")


# --- summaries --------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """The median of several runs, with their min and max."""

    median: float
    low: float
    high: float
    runs: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}

    def show(self, fmt: Callable[[float], str], unit: str = "") -> str:
        if self.runs == 1:
            return f"{fmt(self.median)}{unit}"
        return f"{fmt(self.median)}{unit} ({fmt(self.low)} to {fmt(self.high)})"


def spread(values: Iterable[float]) -> Spread:
    data = sorted(values)
    if not data:
        raise ValueError("no runs to summarize")
    return Spread(statistics.median(data), data[0], data[-1], len(data))


def ratios(values: Sequence[float], references: Sequence[float]) -> Spread:
    """Run-by-run ratios (run i of the value to run i of the reference, measured side by
    side so that both saw the same machine), summarized."""
    return spread(v / r for v, r in zip(values, references, strict=True) if r > 0)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values``."""
    data = sorted(values)
    if not data:
        raise ValueError("no samples")
    index = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
    return data[index]


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference > 0 else ""


def row(
    figure: str,
    value: str,
    reference: str = "",
    ratio_text: str = "",
    target: str = "",
    met: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One line of the results table (bench/__main__ renders these)."""
    return {
        "figure": figure,
        "ratio": ratio_text,
        "value": value,
        "reference": reference,
        "target": target,
        "met": met,
        **extra,
    }


def missing_row(figure: str, why: str, target: str = "") -> dict[str, Any]:
    """A figure that could not be measured here: honest, and not counted as met or missed."""
    return row(figure, f"not measured: {why}", target=target, met=None)
