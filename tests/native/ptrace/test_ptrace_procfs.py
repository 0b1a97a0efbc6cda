"""/proc readers."""

from __future__ import annotations

import os
import threading

from hwbkptd.arch.ptrace import procfs


def test_status_of_this_process() -> None:
    status = procfs.read_status(os.getpid())
    assert status is not None
    assert (status.tgid, status.tracer_pid) == (os.getpid(), 0)
    assert status.state in "RS"
    assert procfs.read_status(2**22 + 12345) is None


def test_threads_are_listed_leader_first() -> None:
    started, stop = threading.Event(), threading.Event()
    tid: list[int] = []

    def run() -> None:
        tid.append(threading.get_native_id())
        started.set()
        stop.wait()

    worker = threading.Thread(target=run)
    worker.start()
    started.wait()
    try:
        tids = procfs.task_ids(os.getpid())
        assert tids[0] == os.getpid()
        assert tid[0] in tids
        assert procfs.thread_belongs(os.getpid(), tid[0])
        assert not procfs.thread_belongs(os.getpid(), 1)
        assert procfs.sigtrap_pending(os.getpid(), tid[0]) is False
    finally:
        stop.set()
        worker.join()
    assert procfs.task_ids(2**22 + 12345) == []


def test_comm_and_yama() -> None:
    assert procfs.comm(os.getpid())
    assert procfs.comm(2**22 + 12345) == ""
    scope = procfs.yama_ptrace_scope()
    assert scope is None or 0 <= scope <= 3
