"""Threads, exit codes and memory through /proc (fixture trees, and this process itself)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from hwbkptd.arch.perf.procmem import ProcMem, list_tasks, zombie_exit_code


def stat_line(state: str, exit_code: int, comm: str = "a (b) c") -> str:
    # Fields 3..52 after "pid (comm)": state first, exit_code last.
    fields = [state] + ["0"] * 48 + [str(exit_code)]
    return f"42 ({comm}) " + " ".join(fields) + "\n"


def fake_proc(tmp_path: Path, stat: str, tids: list[int]) -> Path:
    d = tmp_path / "42"
    (d / "task").mkdir(parents=True)
    for tid in tids:
        (d / "task" / str(tid)).mkdir()
    (d / "stat").write_text(stat)
    return tmp_path


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [("Z", 7 << 8, 7), ("Z", 0, 0), ("Z", 9, -9), ("S", 7 << 8, -1), ("R", 0, -1)],
)
def test_exit_codes_of_zombies_only(tmp_path: Path, state: str, status: int, code: int) -> None:
    root = fake_proc(tmp_path, stat_line(state, status), [42])
    assert zombie_exit_code(42, root) == code


def test_gone_or_garbled_processes(tmp_path: Path) -> None:
    assert zombie_exit_code(43, tmp_path) == -1
    root = fake_proc(tmp_path, "42 (x) Z 1 2\n", [42, 44])
    assert zombie_exit_code(42, root) == -1
    assert list_tasks(42, root) == {42, 44}
    assert list_tasks(43, root) == frozenset()


def test_reads_this_process_memory() -> None:
    buf = ctypes.create_string_buffer(b"nonstop!", 8)
    mem = ProcMem(os.getpid())
    try:
        assert mem.read(ctypes.addressof(buf), 8) == b"nonstop!"
        with pytest.raises(OSError, match="Input/output error"):
            mem.read(8, 8)  # page zero is never mapped
    finally:
        mem.close()
    assert os.getpid() in list_tasks(os.getpid())
