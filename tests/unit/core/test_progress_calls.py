"""Progress through the broker (issue 14): a request by name and ResolveLocation read the
binaries on a worker thread (``Names.prepare``) and tell the session how far it came; a
target the identity may not touch is not read at all. The machine is the simulated one,
its names a fake that reports a large binary."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest
from broker_events import logged_events

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.broker import BreakpointSpec, Broker, BrokerConfig, Identity
from hwbkptd.core.errors import PermissionDenied
from hwbkptd.core.events import Progress, ProgressOperation, StateChanged
from hwbkptd.core.machine_hooks import SimHooks
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import HitWords, NameProgress, Resolved
from hwbkptd.core.progress import RESOLVE_MIN_BYTES

BIG = 4 * RESOLVE_MIN_BYTES
ADDRESS = 0x601000


class BigNames:
    """Resolves every name to ADDRESS; ``prepare`` reads a BIG-byte binary in 64 steps."""

    def __init__(self) -> None:
        self.prepared: list[tuple[int, str, bool]] = []
        self.prepared_hits: list[tuple[int, int, bool]] = []

    def prepare(self, pid: int, location: str, access: Access, report: NameProgress) -> None:
        self.prepared.append((pid, location, threading.current_thread() is threading.main_thread()))
        for i in range(1, 65):
            report("/bin/big", "symbols", i * BIG // 64, BIG)

    def prepare_hits(self, pid: int, address: int, report: NameProgress) -> None:
        on_loop = threading.current_thread() is threading.main_thread()
        self.prepared_hits.append((pid, address, on_loop))
        for i in range(1, 65):
            report("/bin/big", "lines", i * BIG // 64, BIG)

    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        return Resolved(location, ADDRESS, 8, location, module="/bin/big")

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        return HitWords()

    def forget(self, pid: int) -> None:
        pass


class Hooks(SimHooks):
    def __init__(self, names: BigNames) -> None:
        self.names = names  # type: ignore[assignment]

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        return self.names.resolve(scope, pid, symbol, access)  # type: ignore[union-attr]


async def _world(hit_words: bool) -> AsyncIterator[tuple[Broker, BigNames, int]]:
    lay = parse_layout("sim")
    sim = SimMechanism(lay.arch, lay.pools)
    names = BigNames()
    broker = Broker(
        arch=lay.arch,
        pools=lay.pools,
        mechanism=sim,
        config=BrokerConfig(machine="sim", hit_words=hit_words),
        hooks=Hooks(names),
    )
    await broker.start()
    pid, _ = sim.spawn_process()
    yield broker, names, pid
    await broker.stop()


@pytest.fixture
async def world() -> AsyncIterator[tuple[Broker, BigNames, int]]:
    async for made in _world(hit_words=True):
        yield made


@pytest.fixture
async def wordless() -> AsyncIterator[tuple[Broker, BigNames, int]]:
    async for made in _world(hit_words=False):
        yield made


async def test_progress_a_request_by_name_reads_off_the_loop_and_reports(
    world: tuple[Broker, BigNames, int],
) -> None:
    broker, names, pid = world
    token = broker.open_session("ide", identity=Identity()).token
    spec = BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=pid, symbol="big_table")
    view = await broker.set_breakpoint(token, spec)
    assert view.spec.address == ADDRESS
    assert names.prepared == [(pid, "big_table", False)]  # a worker thread, not the loop
    log = await logged_events(broker, token)
    # The name's reading, then its hits' words' (the next test).
    reports = [e.kind for e in log if isinstance(e.kind, Progress) and e.kind.detail == "symbols"]
    assert reports[0].done < BIG
    assert reports[-1] == Progress(
        ProgressOperation.RESOLVE, pid, "/bin/big", "symbols", BIG, BIG, True
    )
    assert len(reports) <= 12  # 64 raw reports, a tenth of the work apart
    # Told before the request's first state: the reading came first.
    first_state = next(i for i, e in enumerate(log) if isinstance(e.kind, StateChanged))
    assert all(isinstance(e.kind, Progress) for e in log[:first_state])
    assert {e.breakpoint_id for e in log if isinstance(e.kind, Progress)} == {0}


async def test_progress_resolve_location_reports(world: tuple[Broker, BigNames, int]) -> None:
    broker, names, pid = world
    token = broker.open_session("ide", identity=Identity()).token
    resolved = await broker.resolve_location(token, pid, "big_table", Access.WRITE)
    assert resolved.address == ADDRESS
    assert names.prepared == [(pid, "big_table", False)]
    reports = [e.kind for e in await logged_events(broker, token) if isinstance(e.kind, Progress)]
    assert reports[-1].finished


async def test_progress_a_target_out_of_bounds_is_not_read(
    world: tuple[Broker, BigNames, int],
) -> None:
    broker, names, pid = world
    stranger = Identity(name="stranger", any_target=False)
    token = broker.open_session("stranger", identity=stranger).token
    spec = BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=pid, symbol="big_table")
    with pytest.raises(PermissionDenied):
        await broker.set_breakpoint(token, spec)
    with pytest.raises(PermissionDenied):
        await broker.resolve_location(token, pid, "big_table", Access.WRITE)
    assert names.prepared == []
    assert names.prepared_hits == []
    assert [e for e in await logged_events(broker, token) if isinstance(e.kind, Progress)] == []
    spec = BreakpointSpec(Scope.PROCESS, ADDRESS, 8, Access.WRITE, pid=pid)
    with pytest.raises(PermissionDenied):
        await broker.set_breakpoint(token, spec)
    assert names.prepared_hits == []


async def test_progress_hit_words_are_read_off_the_loop_before_arming(
    world: tuple[Broker, BigNames, int],
) -> None:
    """A request by address has nothing to resolve, but its hits will be put in words: the
    binaries are read on a worker thread before it is armed, or the first hit reads them
    on the loop and every hit waits (measured: 1 ms latency for a whole run after that)."""
    broker, names, pid = world
    token = broker.open_session("ide", identity=Identity()).token
    spec = BreakpointSpec(Scope.PROCESS, ADDRESS + 8, 8, Access.WRITE, pid=pid)
    await broker.set_breakpoint(token, spec)
    assert names.prepared_hits == [(pid, ADDRESS + 8, False)]
    log = await logged_events(broker, token)
    first_state = next(i for i, e in enumerate(log) if isinstance(e.kind, StateChanged))
    reports = [e.kind for e in log[:first_state]]
    assert reports
    assert all(isinstance(r, Progress) for r in reports)
    assert reports[-1] == Progress(
        ProgressOperation.RESOLVE, pid, "/bin/big", "lines", BIG, BIG, True
    )
    # By name: resolved, then the words of the address it resolved to.
    spec = BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=pid, symbol="big_table")
    await broker.set_breakpoint(token, spec)
    assert names.prepared_hits[-1] == (pid, ADDRESS, False)


async def test_progress_no_hit_words_nothing_read_for_them(
    wordless: tuple[Broker, BigNames, int],
) -> None:
    broker, names, pid = wordless
    token = broker.open_session("ide", identity=Identity()).token
    await broker.set_breakpoint(
        token, BreakpointSpec(Scope.PROCESS, ADDRESS, 8, Access.WRITE, pid=pid)
    )
    assert names.prepared_hits == []
