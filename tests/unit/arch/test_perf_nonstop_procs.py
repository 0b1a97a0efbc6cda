"""hwbkptd.arch.perf.nonstop_procs: followed processes and their threads' task records.

Issue 10 item 2 (rooms with one job): the parts that need no perf event run here,
on a fake /proc; following a real process (trackers, births, exits) is in
tests/native/perf/test_perf_nonstop.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbkptd.arch.perf.nonstop_delivery import NonstopStats
from hwbkptd.arch.perf.nonstop_procs import FollowedProcesses
from hwbkptd.arch.perf.nonstop_table import NonstopTable
from hwbkptd.arch.perf.ring import RECORD_FORK, TaskRecord
from hwbkptd.core.errors import NotFound


def _proc_root(tmp_path: Path, pid: int, tgid: int) -> Path:
    status = tmp_path / str(pid) / "status"
    status.parent.mkdir()
    status.write_text(f"Name:\tt\nTgid:\t{tgid}\nPid:\t{pid}\n")
    return tmp_path


def test_item10_check_process_tells_a_thread_from_a_process(tmp_path: Path) -> None:
    root = _proc_root(tmp_path, 42, 42)
    _proc_root(tmp_path, 43, 42)
    procs = FollowedProcesses(NonstopTable(), NonstopStats(), root)
    procs.check_process(42)
    with pytest.raises(NotFound, match="thread of process 42"):
        procs.check_process(43)
    with pytest.raises(NotFound, match="no process 44"):
        procs.check_process(44)


def test_item10_task_records_of_unfollowed_processes_change_nothing(tmp_path: Path) -> None:
    table, stats = NonstopTable(), NonstopStats()
    procs = FollowedProcesses(table, stats, tmp_path)
    fork = TaskRecord(RECORD_FORK, pid=42, ppid=42, tid=43, ptid=42, time=1)
    procs.on_fork(fork)
    procs.on_exit(fork)
    procs.on_exec(fork)
    assert (stats.births, stats.exits) == (0, 0)
    assert table.threads == {}
    assert 42 not in procs
    assert not procs
    assert procs.tracker_fds() == 0
