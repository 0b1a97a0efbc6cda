"""The ptrace requests python-ptrace lacks, on a real child."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from hwbkptd.arch.ptrace import binding as pt

pytestmark = pytest.mark.native


def test_constants() -> None:
    assert (pt.PTRACE_SEIZE, pt.PTRACE_INTERRUPT, pt.PTRACE_LISTEN) == (0x4206, 0x4207, 0x4208)
    assert (pt.PTRACE_EVENT_STOP, pt.TRAP_PERF, pt.TRAP_HWBKPT) == (128, 6, 4)
    assert pt.RIP_OFFSET == 16 * 8  # struct user_regs_struct: rip is the 17th word


def test_seize_interrupt_listen_detach(native_bins: dict[str, str]) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        pt.seize(proc.pid, pt.PTRACE_O_TRACEEXIT)
        assert pt.waitpid_nohang(proc.pid) is None  # SEIZE leaves it running
        pt.interrupt(proc.pid)
        _, status = os.waitpid(proc.pid, pt.WALL)
        assert os.WIFSTOPPED(status)
        assert (status >> 16, os.WSTOPSIG(status)) == (pt.PTRACE_EVENT_STOP, signal.SIGTRAP)
        assert pt.peekuser(proc.pid, pt.RIP_OFFSET) > 0
        si = pt.getsiginfo(proc.pid)
        assert (si.signo, si.code) == (signal.SIGTRAP, signal.SIGTRAP | pt.PTRACE_EVENT_STOP << 8)
        pt.cont(proc.pid)
        # A group-stop under SEIZE: PTRACE_EVENT_STOP with the stop signal, then LISTEN.
        os.kill(proc.pid, signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, pt.WALL)
        assert (status >> 16, os.WSTOPSIG(status)) == (0, signal.SIGSTOP)  # delivery-stop
        pt.cont(proc.pid, signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, pt.WALL)
        assert (status >> 16, os.WSTOPSIG(status)) == (pt.PTRACE_EVENT_STOP, signal.SIGSTOP)
        pt.listen(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
        _, status = os.waitpid(proc.pid, pt.WALL)
        assert os.WIFSTOPPED(status)  # SIGCONT's delivery-stop or the end of the group-stop
        pt.detach(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_waitpid_nohang_on_a_stranger() -> None:
    with pytest.raises(ChildProcessError):
        pt.waitpid_nohang(1)
