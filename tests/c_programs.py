"""The test C programs (tests/c/*.c): one copy of each, and the one way they are built.

Native and native end-to-end tests run them; tests/conftest.py's ``c_bins`` compiles
them all once per session into a temporary directory. They are built without PIE, so the
address ``nm`` gives for a symbol is its run-time address (``nm_address``). A line
``hwbkpt-build: WORDS`` in a source asks for more: ``pie`` adds NAME-pie (PIE, ASLR),
``stripped`` adds NAME-stripped (no symbol table), ``shared`` builds libNAME.so instead
(keyed NAME).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

from native_support import require_native

__all__ = ["C_DIR", "GCC_FLAGS", "build_all", "nm_address"]

C_DIR = Path(__file__).resolve().parent / "c"
#: -g for gdb and the readable crash; no PIE for ``nm_address``; -pthread for the threaded ones.
GCC_FLAGS = ("-O1", "-g", "-Wall", "-Werror", "-no-pie", "-pthread")


def build_all(out: Path) -> dict[str, str]:
    """Every tests/c/*.c compiled into ``out``: name -> path (skips where they cannot build)."""
    if platform.system() != "Linux":
        require_native(f"the test C programs are Linux programs, this is {platform.system()}")
    if shutil.which("gcc") is None:
        require_native("needs gcc to build the test C programs (tests/c)")
    bins: dict[str, str] = {}
    for src in sorted(C_DIR.glob("*.c")):
        words = _build_words(src)
        if "shared" in words:
            lib = out / f"lib{src.stem}.so"
            _gcc(src, lib, ("-O1", "-g", "-Wall", "-Werror", "-fPIC", "-shared"))
            bins[src.stem] = str(lib)
            continue
        exe = out / src.stem
        _gcc(src, exe, GCC_FLAGS)
        bins[src.stem] = str(exe)
        if "pie" in words:
            pie = out / f"{src.stem}-pie"
            _gcc(src, pie, (*(f for f in GCC_FLAGS if f != "-no-pie"), "-fPIE", "-pie"))
            bins[f"{src.stem}-pie"] = str(pie)
        if "stripped" in words:
            stripped = out / f"{src.stem}-stripped"
            subprocess.run(["strip", "-o", str(stripped), str(exe)], check=True)
            bins[f"{src.stem}-stripped"] = str(stripped)
    return bins


def _build_words(src: Path) -> set[str]:
    for line in src.read_text().splitlines()[:20]:
        if "hwbkpt-build:" in line:
            return set(line.split("hwbkpt-build:", 1)[1].split())
    return set()


def _gcc(src: Path, out: Path, flags: tuple[str, ...]) -> None:
    done = subprocess.run(
        ["gcc", *flags, "-o", str(out), str(src)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"gcc failed on {src}:\n{done.stderr}")


def nm_address(exe: str, symbol: str) -> int:
    """The run-time address of ``symbol`` in one of these programs (built without PIE)."""
    out = subprocess.run(["nm", exe], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16)
    raise AssertionError(f"{symbol} not in {exe}")
