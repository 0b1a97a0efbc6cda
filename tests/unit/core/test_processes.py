"""hwbkptd.core.processes through the broker: attach on first need, detach after the last,
launch and release, machine hooks. The machine is the simulated one, extended with
processes that exist outside the broker until attached (as on a real machine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest
from broker_events import logged_events

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.broker import BreakpointSpec, Broker, BrokerConfig, Identity
from hwbkptd.core.broker_types import BreakpointSpec as Spec
from hwbkptd.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from hwbkptd.core.events import Progress, ProgressOperation, Removed, TargetExited
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import Access, RequestState, Scope
from hwbkptd.core.names import Resolved
from hwbkptd.core.policy import ProcessFacts

LOCAL = Identity()
VAR = 0x601000
KSYM = 0xFFFF_FFFF_8200_0000
GDB = 4242


class OutsideSim(SimMechanism):
    """A sim whose processes 500.. exist outside the broker until attached or launched."""

    def __init__(self) -> None:
        lay = parse_layout("sim")
        super().__init__(lay.arch, lay.pools)
        self.outside: dict[int, list[int]] = {500: [500, 501], 600: [600], 700: [700]}
        self.traced_by: dict[int, int] = {700: GDB}
        self.calls: list[tuple[str, int]] = []
        self.held: set[int] = set()
        self.next_launch = 900
        #: When set, a launch finishes only once it is set (a call abandoned meanwhile).
        self.launch_gate: asyncio.Event | None = None
        self.launching = asyncio.Event()

    async def attach(
        self,
        pid: int,
        follow_fork: bool = False,
        nonstop: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Sequence[int]:
        self.calls.append(("attach-nonstop" if nonstop else "attach", pid))
        if pid in self.processes():
            if not nonstop and pid in self.traced_by:
                raise FailedPrecondition(f"process {pid} is already traced by pid {GDB} (gdb)")
            return tuple(self.processes()[pid])
        if pid in self.traced_by and not nonstop:
            raise FailedPrecondition(f"process {pid} is already traced by pid {GDB} (gdb)")
        tids = self.outside.get(pid)
        if tids is None:
            raise NotFound("pid", f"no process {pid}")
        if progress is not None:  # as the ptrace tracer does: every 64 threads taken
            for done in range(64, len(tids), 64):
                progress(done, len(tids))
        self._adopt(pid, tids)
        return tuple(tids)

    def _adopt(self, pid: int, tids: list[int]) -> None:
        self._procs[pid] = []
        self._memory.add_process(pid)
        for tid in tids:
            self._add_thread(pid, tid)

    async def detach(self, pid: int) -> None:
        self.calls.append(("detach", pid))
        for tid in list(self._procs.get(pid, ())):
            self._drop_thread(tid)
        self._procs.pop(pid, None)
        self.held.discard(pid)

    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool = False
    ) -> int:
        pid = self.next_launch
        self.next_launch += 1
        self.calls.append(("launch", pid))
        self.launching.set()
        if self.launch_gate is not None:
            await self.launch_gate.wait()
        self._adopt(pid, [pid])
        self.held.add(pid)
        return pid

    async def release(self, pid: int) -> None:
        self.calls.append(("release", pid))
        self.held.discard(pid)

    async def kill_launched(self, pid: int) -> None:
        self.calls.append(("kill", pid))
        assert pid in self.held, "only a launch never released is killed"
        self.held.discard(pid)
        self.end_process(pid, -9)


class Hooks:
    attaches = True

    def __init__(self, sim: OutsideSim) -> None:
        self._sim = sim

    names = None

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        if scope is not Scope.KERNEL:
            raise FailedPrecondition("user-space symbols are not supported yet")
        if symbol != "init_stack":
            raise NotFound("spec.symbol", f"kernel symbol {symbol!r} is not in /proc/kallsyms")
        return Resolved(symbol, KSYM, 0)

    def check(self, spec: Spec) -> None:
        if spec.scope is Scope.KERNEL and spec.access is Access.EXEC:
            raise FailedPrecondition("kernel exec breakpoints need kprobes")

    def process_of(self, tid: int) -> int:
        for pid, tids in self._sim.outside.items():
            if tid in tids:
                return pid
        raise NotFound("spec.tid", f"no thread {tid}")

    def process_facts(self, pid: int) -> ProcessFacts:
        return ProcessFacts(pid=pid, uids=(1000, 1000, 1000), exe="/usr/bin/outside")

    def mechanisms(self) -> tuple[MechanismInfo, ...]:
        return (MechanismInfo("ptrace", True), MechanismInfo("perf-kernel", True))

    def notes(self) -> tuple[str, ...]:
        return ("ptrace: a note",)


@dataclass
class World:
    broker: Broker
    sim: OutsideSim


@pytest.fixture
async def world() -> AsyncIterator[World]:
    sim = OutsideSim()
    lay = parse_layout("sim")
    broker = Broker(
        arch=lay.arch,
        pools=lay.pools,
        mechanism=sim,
        config=BrokerConfig(machine="native"),
        hooks=Hooks(sim),
    )
    await broker.start()
    yield World(broker, sim)
    await broker.stop()


def watch(pid: int, address: int = VAR, **kw: object) -> BreakpointSpec:
    fields: dict[str, object] = {"length": 8, "access": Access.WRITE, **kw}
    return BreakpointSpec(Scope.PROCESS, address, pid=pid, **fields)  # type: ignore[arg-type]


def session(w: World, name: str) -> str:
    return w.broker.open_session(name, identity=LOCAL).token


def traced(w: World, pid: int) -> bool:
    try:
        w.broker.slot_map(pid)
    except NotFound:
        return False
    return True


async def test_a_request_attaches_and_the_last_need_detaches(world: World) -> None:
    b, sim = world.broker, world.sim
    a, c = session(world, "a"), session(world, "c")
    view = await b.set_breakpoint(a, watch(500))
    assert view.state is RequestState.INSTALLED
    assert view.installed_tids == (500, 501)
    await b.set_breakpoint(c, watch(500, VAR + 8))
    assert sim.calls == [("attach", 500)]  # the second request finds it traced
    await b.close_session(a)
    assert traced(world, 500)  # c still watches it
    assert ("detach", 500) not in sim.calls
    (bp,) = b.list_breakpoints(c)
    await b.remove_breakpoint(c, bp.id)
    assert sim.calls[-1] == ("detach", 500)
    assert not traced(world, 500)
    assert sim.processes().get(500) is None
    # Taken again on the next request: a fresh attach.
    await b.set_breakpoint(c, watch(500))
    assert sim.calls[-1] == ("attach", 500)
    assert traced(world, 500)


async def test_a_bad_request_attaches_nothing(world: World) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    with pytest.raises(InvalidArgument) as err:
        await b.set_breakpoint(a, watch(500, length=0))
    assert err.value.field == "spec.length"
    with pytest.raises(FailedPrecondition, match="user-space symbols"):
        await b.set_breakpoint(a, watch(500, 0, symbol="main"))
    assert sim.calls == []
    assert not traced(world, 500)


async def test_a_request_on_a_thread_that_is_not_the_process_s_detaches_again(
    world: World,
) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    spec = BreakpointSpec(Scope.THREAD, VAR, 8, Access.WRITE, pid=500, tid=600)
    with pytest.raises(NotFound) as err:
        await b.set_breakpoint(a, spec)
    assert err.value.field == "spec.tid"
    await b.finish_background_work()
    assert sim.calls == [("attach", 500), ("detach", 500)]
    assert not traced(world, 500)


async def test_thread_scope_finds_the_owner(world: World) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    spec = BreakpointSpec(Scope.THREAD, VAR, 8, Access.WRITE, tid=501)
    view = await b.set_breakpoint(a, spec)
    assert (view.spec.pid, view.installed_tids) == (500, (501,))
    assert sim.calls == [("attach", 500)]
    with pytest.raises(NotFound) as err:
        await b.set_breakpoint(a, BreakpointSpec(Scope.THREAD, VAR, 8, Access.WRITE, tid=12345))
    assert err.value.field == "spec.tid"


async def test_attach_errors_keep_their_status_and_name_the_request_field(world: World) -> None:
    b = world.broker
    a = session(world, "a")
    with pytest.raises(FailedPrecondition, match=f"pid {GDB}"):
        await b.set_breakpoint(a, watch(700))
    with pytest.raises(NotFound) as err:
        await b.set_breakpoint(a, watch(12345))
    assert err.value.field == "spec.pid"
    with pytest.raises(NotFound) as err:
        await b.attach_process(a, 12345)
    assert err.value.field == "pid"
    with pytest.raises(FailedPrecondition, match=f"pid {GDB}"):
        await b.attach_process(a, 700)
    assert not traced(world, 700)


async def test_explicit_attach_lasts_until_the_session_ends(world: World) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    assert await b.attach_process(a, 600) == (600,)
    view = await b.set_breakpoint(a, watch(600))
    await b.remove_breakpoint(a, view.id)
    assert traced(world, 600)
    await b.close_session(a)
    assert sim.calls == [("attach", 600), ("detach", 600)]
    assert not traced(world, 600)


async def test_progress_of_an_attach_goes_to_the_session_that_asked(world: World) -> None:
    b, sim = world.broker, world.sim
    sim.outside[800] = list(range(800, 800 + 1000))
    a, other = session(world, "a"), session(world, "other")
    assert len(await b.attach_process(a, 800)) == 1000
    assert await b.attach_process(a, 500) == (500, 501)  # two threads: quiet
    reports = [e.kind for e in await logged_events(b, a) if isinstance(e.kind, Progress)]
    assert reports[0] == Progress(ProgressOperation.ATTACH, 800, "", "", 64, 1000, False)
    assert reports[-1] == Progress(ProgressOperation.ATTACH, 800, "", "", 1000, 1000, True)
    assert [p.done for p in reports] == sorted(p.done for p in reports)
    assert {p.pid for p in reports} == {800}
    assert not [e for e in await logged_events(b, other) if isinstance(e.kind, Progress)]


async def test_launch_release_and_who_may(world: World) -> None:
    b, sim = world.broker, world.sim
    a, other = session(world, "a"), session(world, "other")
    pid = await b.launch_process(a, ["/bin/prog", "x"], {"K": "v"}, "/tmp")
    assert sim.held == {pid}
    assert (await b.set_breakpoint(a, watch(pid))).state is RequestState.INSTALLED
    with pytest.raises(PermissionDenied, match="launched by session 'a'"):
        await b.release_process(other, pid)
    await b.attach_process(other, 600)
    with pytest.raises(FailedPrecondition, match="attached, not launched"):
        await b.release_process(other, 600)
    with pytest.raises(NotFound):
        await b.release_process(a, 12345)
    await b.release_process(a, pid)
    assert sim.held == set()
    with pytest.raises(FailedPrecondition, match="already released"):
        await b.release_process(a, pid)


async def test_item5_a_launch_never_released_is_killed_when_its_session_ends(
    world: World,
) -> None:
    """Issue 9 item 5: a launch whose session ends before releasing it (a client that
    failed after LaunchProcess) leaves no process behind; a released one runs on."""
    b, sim = world.broker, world.sim
    a = session(world, "a")
    pid = await b.launch_process(a, ["/bin/prog"], {}, "")
    await b.close_session(a)
    assert sim.calls == [("launch", pid), ("kill", pid)]
    assert pid not in sim.processes()
    assert not traced(world, pid)
    c = session(world, "c")
    ran = await b.launch_process(c, ["/bin/prog"], {}, "")
    await b.release_process(c, ran)
    await b.close_session(c)
    assert sim.calls[-3:] == [("launch", ran), ("release", ran), ("detach", ran)]


async def test_item5_an_abandoned_launch_call_leaves_no_process(world: World) -> None:
    """The caller of LaunchProcess went away (cancelled) while the program started."""
    b, sim = world.broker, world.sim
    a = session(world, "a")
    sim.launch_gate = asyncio.Event()
    call = asyncio.ensure_future(b.launch_process(a, ["/bin/prog"], {}, ""))
    await sim.launching.wait()
    call.cancel()
    sim.launch_gate.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    ((_, pid),) = sim.calls[:1]
    assert sim.calls == [("launch", pid), ("kill", pid)]
    assert pid not in sim.processes()


@pytest.mark.parametrize(
    ("argv", "env", "cwd", "field"),
    [
        ([], {}, "/", "argv"),
        ([""], {}, "/", "argv"),
        (["a\0b"], {}, "/", "argv"),
        (["/bin/true"], {"A=B": "c"}, "/", "env"),
        (["/bin/true"], {"": "c"}, "/", "env"),
        (["/bin/true"], {}, "relative/dir", "cwd"),
    ],
)
async def test_bad_launches_change_nothing(
    world: World, argv: list[str], env: dict[str, str], cwd: str, field: str
) -> None:
    a = session(world, "a")
    with pytest.raises(InvalidArgument) as err:
        await world.broker.launch_process(a, argv, env, cwd)
    assert err.value.field == field
    assert world.sim.calls == []


async def test_process_exit_is_told_to_sessions_that_attached(world: World) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    await b.attach_process(a, 600)
    sim.end_process(600, 3)
    got = [e for e in await logged_events(b, a) if isinstance(e.kind, TargetExited)]
    assert [(e.breakpoint_id, e.kind) for e in got] == [(0, TargetExited(600, 0, 3))]
    assert not traced(world, 600)
    await b.close_session(a)
    assert ("detach", 600) not in sim.calls


async def test_kernel_symbols_and_up_front_checks(world: World) -> None:
    b = world.broker
    a = session(world, "a")
    spec = BreakpointSpec(Scope.KERNEL, 0, 8, Access.READ_WRITE, symbol="init_stack")
    view = await b.set_breakpoint(a, spec)
    assert (view.spec.address, view.spec.symbol) == (KSYM, "init_stack")
    with pytest.raises(NotFound) as err:
        await b.set_breakpoint(a, BreakpointSpec(Scope.KERNEL, 0, 8, Access.WRITE, symbol="nope"))
    assert err.value.field == "spec.symbol"
    both = BreakpointSpec(Scope.KERNEL, KSYM + 8, 8, Access.WRITE, symbol="init_stack")
    with pytest.raises(InvalidArgument) as bad:
        await b.set_breakpoint(a, both)
    assert bad.value.field == "spec.address"
    with pytest.raises(FailedPrecondition, match="kprobes"):
        await b.set_breakpoint(a, BreakpointSpec(Scope.KERNEL, KSYM, 0, Access.EXEC))
    assert [v.id for v in b.list_breakpoints(a)] == [view.id]


async def test_describe_lists_the_parts(world: World) -> None:
    desc = world.broker.describe()
    assert [m.name for m in desc.mechanisms] == ["ptrace", "perf-kernel"]
    assert desc.notes[0] == "ptrace: a note"


async def test_nonstop_follows_a_process_gdb_holds_and_a_stopping_request_is_refused(
    world: World,
) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    quiet = await b.set_breakpoint(a, watch(700, nonstop=True))
    assert quiet.state is RequestState.INSTALLED
    assert sim.calls == [("attach-nonstop", 700)]
    # A request that stops threads needs the process traced for real: gdb has it.
    with pytest.raises(FailedPrecondition, match=f"pid {GDB}"):
        await b.set_breakpoint(a, watch(700, VAR + 8))
    assert sim.calls == [("attach-nonstop", 700), ("attach", 700)]
    assert [v.id for v in b.list_breakpoints(a)] == [quiet.id]
    assert traced(world, 700)  # the refusal let nothing go
    # More non-stop requests find it followed already.
    await b.set_breakpoint(a, watch(700, VAR + 16, nonstop=True))
    assert sim.calls[-1] == ("attach", 700)


async def test_a_stopping_request_upgrades_a_nonstop_process_once(world: World) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    await b.set_breakpoint(a, watch(600, nonstop=True))
    loud = await b.set_breakpoint(a, watch(600, VAR + 8))
    assert loud.state is RequestState.INSTALLED
    await b.set_breakpoint(a, watch(600, VAR + 16))
    await b.set_breakpoint(a, watch(600, VAR + 24, nonstop=True))
    assert sim.calls == [("attach-nonstop", 600), ("attach", 600)]
    for view in b.list_breakpoints(a):
        await b.remove_breakpoint(a, view.id)
    assert sim.calls[-1] == ("detach", 600)


async def test_detach_drops_the_session_s_hold_and_lets_go_after_the_last(world: World) -> None:
    b, sim = world.broker, world.sim
    a, c = session(world, "a"), session(world, "c")
    await b.attach_process(a, 500)
    mine = await b.set_breakpoint(a, watch(500))
    theirs = await b.set_breakpoint(c, watch(500, VAR + 8))
    assert await b.detach_process(a, 500) == (False, (mine.id,))  # c still watches it
    assert [v.id for v in b.list_breakpoints(a)] == []
    assert [v.id for v in b.list_breakpoints(c)] == [theirs.id]
    assert ("detach", 500) not in sim.calls
    removed = [e.kind for e in await logged_events(b, a) if isinstance(e.kind, Removed)]
    assert removed == [Removed("detached")]
    assert await b.detach_process(c, 500) == (True, (theirs.id,))
    assert sim.calls[-1] == ("detach", 500)
    with pytest.raises(NotFound) as err:
        await b.detach_process(c, 500)
    assert err.value.field == "pid"
    with pytest.raises(InvalidArgument):
        await b.detach_process(c, 0)


async def test_detaching_a_held_launch_lets_it_run(world: World) -> None:
    b, sim = world.broker, world.sim
    a = session(world, "a")
    pid = await b.launch_process(a, ["/bin/true"], {}, "/")
    assert await b.detach_process(a, pid) == (True, ())
    assert sim.calls[-2:] == [("release", pid), ("detach", pid)]
