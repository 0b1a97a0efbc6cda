"""NativeMechanism: the CPU table goes to perf, thread tables to ptrace."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from native_support import require_native
from perf_support import RecordingSink

from hwbkptd.arch import native
from hwbkptd.arch.perf.caps import KERNEL_EXEC_REFUSED
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.core.errors import FailedPrecondition
from hwbkptd.core.mechanism import SlotEntry, SlotWrite
from hwbkptd.core.model import CPU_CONTEXT, Access, Chunk

pytestmark = [pytest.mark.native, pytest.mark.usefixtures("kernel_root")]


@pytest.mark.usefixtures("kernel_perf")
async def test_cpu_table_is_armed_by_the_perf_helper() -> None:
    mech = native.NativeMechanism()
    mech.start(RecordingSink())
    try:
        chunk = Chunk("dr", Kallsyms.load().resolve("init_stack"), 8, Access.READ_WRITE)
        write = SlotWrite(0, CPU_CONTEXT, 1, {"dr": (SlotEntry(chunk), None, None, None)})
        assert await mech.apply([write]) == []
        assert mech.kernel.armed_cpus("dr", 0) == mech.kernel.online_cpus
        with pytest.raises(FailedPrecondition, match="kernel memory is not readable"):
            await mech.read_memory(0, chunk.address, 8)
    finally:
        await mech.close()
    assert mech.kernel.open_fds() == 0


async def test_describe_lists_three_mechanisms() -> None:
    mech = native.NativeMechanism()
    mech.start(RecordingSink())
    try:
        names = [m.name for m in mech.mechanisms()]
        assert names == ["ptrace", "perf-kernel", "perf-nonstop"]
        ptrace, perf, nonstop = mech.mechanisms()
        assert ptrace.available == (mech.ptrace is not None)
        assert ptrace.available or ptrace.reason
        # perf-kernel is available exactly when the kernel takes kernel addresses.
        assert perf.available == (not mech.caps.kernel_addresses_refused), perf.reason
        assert perf.available or perf.reason == mech.caps.kernel_addresses_refused
        assert any("kernel exec breakpoints" in n for n in perf.notes)
        assert nonstop.available, nonstop.reason
        info = mech.info()
        assert info.name == "native"
        assert info.available
        assert any(n.startswith("perf-kernel: ") for n in info.notes)
    finally:
        await mech.close()
    ok, why = native.native_available()
    assert ok, why


async def test_threads_without_ptrace_are_refused_with_the_reason() -> None:
    mech = native.NativeMechanism(load_ptrace=False)
    mech.start(RecordingSink())
    try:
        assert not mech.mechanisms()[0].available
        with pytest.raises(FailedPrecondition, match="threads cannot be traced"):
            await mech.attach(os.getpid())
        with pytest.raises(FailedPrecondition, match="threads cannot be traced"):
            await mech.apply([SlotWrite(1, 1, 1, {"dr": (None,) * 4})])
    finally:
        await mech.close()


def test_kernel_exec_requests_are_checked_up_front() -> None:
    caps = native.NativeMechanism(load_ptrace=False).caps
    if caps.kprobes:
        pytest.skip("this kernel has kprobes")
    with pytest.raises(FailedPrecondition, match="kprobes"):
        native.check_kernel_request(0xFFFF_FFFF_8100_0000, Access.EXEC, caps)
    assert KERNEL_EXEC_REFUSED.startswith("kernel exec breakpoints need kprobes")
    if caps.kernel_addresses_refused:
        with pytest.raises(FailedPrecondition, match="refuses breakpoints on kernel addresses"):
            native.check_kernel_request(0xFFFF_FFFF_8100_0000, Access.READ_WRITE, caps)
    else:
        native.check_kernel_request(0xFFFF_FFFF_8100_0000, Access.READ_WRITE, caps)


class _MixedSink(RecordingSink):
    """Thread news is expected here: the composite also traces a process."""

    def on_thread_started(self, pid: int, tid: int) -> None:
        pass

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None:
        pass

    def on_process_exited(self, pid: int, exit_code: int) -> None:
        pass


@pytest.mark.usefixtures("kernel_perf")
async def test_thread_and_cpu_tables_trade_the_same_slots() -> None:
    """A thread's task-bound slots count on every CPU: what one table frees, the other gets."""
    mech = native.NativeMechanism()
    if mech.ptrace is None:
        await mech.close()
        require_native(f"ptrace mechanism unavailable: {mech.mechanisms()[0].reason}")
    mech.start(_MixedSink())
    target = _sleeper()
    try:
        (tid,) = await mech.attach(target)
        user = tuple(SlotEntry(Chunk("dr", 0x10000 + 8 * i, 8, Access.WRITE)) for i in range(4))
        kernel = Chunk("dr", Kallsyms.load().resolve("init_stack"), 8, Access.READ_WRITE)

        def cpu(gen: int, *entries: SlotEntry | None) -> SlotWrite:
            return SlotWrite(0, CPU_CONTEXT, gen, {"dr": entries + (None,) * (4 - len(entries))})

        def thread(gen: int, *entries: SlotEntry | None) -> SlotWrite:
            return SlotWrite(target, tid, gen, {"dr": entries + (None,) * (4 - len(entries))})

        assert await mech.apply([thread(1, *user)]) == []
        refused = await mech.apply([cpu(1, SlotEntry(kernel))])
        assert [(r.tid, r.reason) for r in refused] == [(CPU_CONTEXT, "external")]
        # The thread gives its slots up and the CPU table takes one, in one batch.
        assert await mech.apply([cpu(2, SlotEntry(kernel)), thread(2)]) == []
        assert mech.kernel.armed_cpus("dr", 0) == mech.kernel.online_cpus
        # And back: the thread can only have all four once the CPU table let go.
        assert await mech.apply([thread(3, *user), cpu(3)]) == []
        assert mech.kernel.open_fds() == 0
        await mech.detach(target)
    finally:
        await mech.close()  # detaches first: a traced child is not reaped by its parent
        os.kill(target, signal.SIGKILL)
        await asyncio.to_thread(os.waitpid, target, 0)


def _sleeper() -> int:
    # The ptrace mechanism blocks SIGCHLD in the broker, and children must not inherit
    # that; posix_spawn sets the mask without running Python in a forked threaded process.
    return os.posix_spawnp("sleep", ["sleep", "60"], dict(os.environ), setsigmask=())
