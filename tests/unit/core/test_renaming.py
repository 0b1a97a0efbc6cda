"""A request made by name outlives an exec (issue 13 item 4), also when the exec is learned
before the new program is mapped (perf's exec record comes first): the name is tried
again on the core's clock, and only a name that never comes back ends the request.
Simulated machine, fake names, manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from broker_events import logged_events

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.broker import BreakpointSpec, Broker, BrokerConfig, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.errors import NotFound
from hwbkptd.core.events import Removed, TargetExec
from hwbkptd.core.machine_hooks import SimHooks
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.names import HitWords, NameProgress, Resolved
from hwbkptd.core.renaming import RETRIES, RETRY_SECONDS

FIRST, MOVED = 0x601000, 0x701000


class ExecNames:
    """``counter`` at FIRST; after an exec (``forget``), not found for ``misses`` tries
    (nothing mapped yet), then at MOVED."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.execed = False
        self.tries = 0

    def prepare(self, pid: int, location: str, access: Access, report: NameProgress) -> None:
        pass

    def resolve(self, scope: Scope, pid: int, location: str, access: Access) -> Resolved:
        if not self.execed:
            return Resolved(location, FIRST, 8, location, module="/bin/prog")
        self.tries += 1
        if self.tries <= self.misses:
            raise NotFound("spec.symbol", f"no symbol {location!r} in the binaries")
        return Resolved(location, MOVED, 8, location, module="/bin/prog")

    def prepare_hits(self, pid: int, address: int, report: NameProgress) -> None:
        pass

    def describe_hit(self, pid: int, ip: int, address: int, access: Access | None) -> HitWords:
        return HitWords()

    def forget(self, pid: int) -> None:
        self.execed = True


class Hooks(SimHooks):
    def __init__(self, names: ExecNames) -> None:
        self.names = names  # type: ignore[assignment]

    def resolve(self, scope: Scope, pid: int, symbol: str, access: Access) -> Resolved:
        return self.names.resolve(scope, pid, symbol, access)  # type: ignore[union-attr]


World = tuple[Broker, SimMechanism, ManualClock]


async def _world(misses: int) -> World:
    lay = parse_layout("sim")
    sim = SimMechanism(lay.arch, lay.pools)
    clock = ManualClock()
    broker = Broker(
        arch=lay.arch,
        pools=lay.pools,
        mechanism=sim,
        config=BrokerConfig(machine="sim"),
        clock=clock,
        hooks=Hooks(ExecNames(misses)),
    )
    await broker.start()
    return broker, sim, clock


@pytest.fixture
async def late() -> AsyncIterator[World]:
    world = await _world(misses=3)
    yield world
    await world[0].stop()


@pytest.fixture
async def never() -> AsyncIterator[World]:
    world = await _world(misses=10_000)
    yield world
    await world[0].stop()


async def _watch_then_exec(broker: Broker, sim: SimMechanism) -> tuple[str, int, int]:
    pid, _ = sim.spawn_process()
    token = broker.open_session("ide", identity=Identity()).token
    spec = BreakpointSpec(Scope.PROCESS, 0, 8, Access.WRITE, pid=pid, symbol="counter")
    view = await broker.set_breakpoint(token, spec)
    assert view.spec.address == FIRST
    sim.exec_process(pid)
    await broker.finish_background_work()
    return token, view.id, pid


async def test_a_name_mapped_after_the_exec_news_is_found_again(late: World) -> None:
    broker, sim, clock = late
    token, rid, pid = await _watch_then_exec(broker, sim)
    for _ in range(3):
        clock.advance(RETRY_SECONDS)
        await broker.finish_background_work()
    (now,) = broker.list_breakpoints(token)
    assert (now.id, now.spec.address) == (rid, MOVED)
    kinds = [e.kind for e in await logged_events(broker, token) if e.breakpoint_id == rid]
    assert TargetExec(pid=pid) in kinds
    assert not any(isinstance(k, Removed) for k in kinds)


async def test_a_name_the_new_program_lacks_ends_after_the_last_try(never: World) -> None:
    broker, sim, clock = never
    token, rid, _ = await _watch_then_exec(broker, sim)
    for _ in range(RETRIES - 1):
        clock.advance(RETRY_SECONDS)
        await broker.finish_background_work()
    assert [v.id for v in broker.list_breakpoints(token)] == [rid]  # still trying
    clock.advance(RETRY_SECONDS)
    await broker.finish_background_work()
    assert list(broker.list_breakpoints(token)) == []
    kinds = [e.kind for e in await logged_events(broker, token) if e.breakpoint_id == rid]
    assert Removed(reason="target_exec") in kinds
