"""hwbkptd.daemon.native_hooks: kernel symbols, up-front refusals and thread owners, from
fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbkptd.arch.native import NativeMechanism
from hwbkptd.arch.perf.caps import KERNEL_EXEC_REFUSED, PerfCaps
from hwbkptd.arch.perf.kernel_mechanism import KernelPerfMechanism
from hwbkptd.core.broker_types import BreakpointSpec
from hwbkptd.core.errors import FailedPrecondition, NotFound, PermissionDenied
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import HitWords, NameProgress, Resolved
from hwbkptd.daemon.native_hooks import NativeHooks, thread_group

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81001000 T schedule
ffffffff82000000 D __start_init_stack
ffffffff82004000 t local_fn
"""
KADDR = 0xFFFF_FFFF_8200_0000


def caps(kprobes: bool = False, allowed: bool = True) -> PerfCaps:
    return PerfCaps(
        perf_events=True,
        breakpoint_pmu=True,
        paranoid=2,
        cap_perfmon=allowed,
        cap_sys_admin=allowed,
        kprobes=kprobes,
        kprobes_evidence="fixture",
    )


def hooks(tmp_path: Path, **kw: bool) -> NativeHooks:
    table = tmp_path / "kallsyms"
    table.write_text(KALLSYMS)
    c = caps(**kw)
    mech = NativeMechanism(caps=c, kernel=KernelPerfMechanism(caps=c), load_ptrace=False)
    return NativeHooks(mech, kallsyms_path=table)


def test_kernel_symbols_resolve(tmp_path: Path) -> None:
    h = hooks(tmp_path)
    assert h.attaches
    w = Access.WRITE
    assert h.resolve(Scope.KERNEL, 0, "schedule", w).address == 0xFFFF_FFFF_8100_1000
    assert h.resolve(Scope.KERNEL, 0, "schedule+0x10", w).address == 0xFFFF_FFFF_8100_1010
    # through __start_init_stack
    assert h.resolve(Scope.KERNEL, 0, "init_stack", w).address == KADDR
    with pytest.raises(NotFound) as err:
        h.resolve(Scope.KERNEL, 0, "no_such_symbol", w)
    assert err.value.field == "spec.symbol"


def test_an_unreadable_table_says_so(tmp_path: Path) -> None:
    c = caps()
    mech = NativeMechanism(caps=c, kernel=KernelPerfMechanism(caps=c), load_ptrace=False)
    h = NativeHooks(mech, kallsyms_path=tmp_path / "missing")
    with pytest.raises(FailedPrecondition, match="cannot be read"):
        h.resolve(Scope.KERNEL, 0, "schedule", Access.WRITE)


def test_kernel_exec_is_refused_up_front_without_kprobes(tmp_path: Path) -> None:
    spec = BreakpointSpec(Scope.KERNEL, 0xFFFF_FFFF_8100_1000, 1, Access.EXEC)
    with pytest.raises(FailedPrecondition, match=KERNEL_EXEC_REFUSED):
        hooks(tmp_path).check(spec)
    hooks(tmp_path, kprobes=True).check(spec)
    hooks(tmp_path).check(BreakpointSpec(Scope.KERNEL, KADDR, 8, Access.WRITE))
    with pytest.raises(PermissionDenied):
        hooks(tmp_path, allowed=False).check(BreakpointSpec(Scope.KERNEL, KADDR, 8, Access.WRITE))


def test_nonstop_is_refused_where_perf_cannot_serve_it(tmp_path: Path) -> None:
    spec = BreakpointSpec(Scope.PROCESS, 0x601000, 8, Access.WRITE, pid=1, nonstop=True)
    hooks(tmp_path).check(spec)  # allowed here: accepted
    with pytest.raises(FailedPrecondition, match=r"non-stop mode: .*perf"):
        hooks(tmp_path, allowed=False).check(spec)


def test_describe_parts_and_notes(tmp_path: Path) -> None:
    h = hooks(tmp_path)
    assert [m.name for m in h.mechanisms()] == ["ptrace", "perf-kernel", "perf-nonstop"]
    assert any(n.startswith("perf-kernel: kernel exec breakpoints: refused") for n in h.notes())


def test_thread_group(tmp_path: Path) -> None:
    (tmp_path / "1235").mkdir()
    (tmp_path / "1235" / "status").write_text("Name:\tx\nTgid:\t1234\nPid:\t1235\n")
    assert thread_group(1235, tmp_path) == 1234
    with pytest.raises(NotFound) as err:
        thread_group(999, tmp_path)
    assert err.value.field == "spec.tid"


class _Names:
    """A Names that answers one location (issue 13)."""

    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        if location != "counter":
            raise NotFound("spec.symbol", location)
        return Resolved(location, 0x404040 + pid, 8, "counter")

    def prepare_hits(self, pid: int, address: int, report: NameProgress) -> None:
        pass

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        return HitWords()

    def forget(self, pid: int) -> None:
        pass


def test_item1_user_names_go_to_the_names_port(tmp_path: Path) -> None:
    c = caps()
    mech = NativeMechanism(caps=c, kernel=KernelPerfMechanism(caps=c), load_ptrace=False)
    names = _Names()
    h = NativeHooks(mech, kallsyms_path=tmp_path / "missing", names=names)
    assert h.names is names
    got = h.resolve(Scope.PROCESS, 2, "counter", Access.WRITE)
    assert (got.address, got.length) == (0x404042, 8)
    with pytest.raises(NotFound):
        h.resolve(Scope.THREAD, 2, "other", Access.WRITE)
