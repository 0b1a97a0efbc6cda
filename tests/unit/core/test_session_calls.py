"""Issue 12: the limits as the broker applies them to sessions and requests (on a sim,
on a manual clock): each breach is refused naming its limit, and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.broker import BreakpointSpec, Broker, BrokerConfig, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.errors import InvalidArgument, ResourceExhausted
from hwbkptd.core.events import Hit, HitsDropped
from hwbkptd.core.limits import EVENT_BYTES, SESSION_BYTES, Limits
from hwbkptd.core.model import Access, Scope
from hwbkptd.core.specs import FIRST_PAGE

VAR = 0x601000
LOCAL = Identity()


async def _broker(**limits: int) -> tuple[Broker, SimMechanism, ManualClock]:
    lay = parse_layout("sim")
    sim = SimMechanism(lay.arch, lay.pools)
    clock = ManualClock()
    broker = Broker(
        arch=lay.arch,
        pools=lay.pools,
        mechanism=sim,
        config=BrokerConfig(machine=lay.machine, limits=Limits(**limits)),  # type: ignore[arg-type]
        clock=clock,
    )
    await broker.start()
    return broker, sim, clock


@pytest.fixture
async def small() -> AsyncIterator[tuple[Broker, SimMechanism, ManualClock]]:
    world = await _broker(max_sessions_per_identity=2, max_requests_per_session=2)
    yield world
    await world[0].stop()


def _watch(pid: int, address: int = VAR) -> BreakpointSpec:
    return BreakpointSpec(Scope.PROCESS, address, 8, Access.WRITE, pid=pid)


async def test_item12_sessions_per_identity(
    small: tuple[Broker, SimMechanism, ManualClock],
) -> None:
    broker, _, clock = small
    a = broker.open_session("a1", identity=LOCAL)
    broker.open_session("a2", identity=LOCAL)
    with pytest.raises(ResourceExhausted, match="max_sessions_per_identity"):
        broker.open_session("a3", identity=LOCAL)
    broker.open_session("b1", identity=Identity(name="other"))  # its own count
    await broker.close_session(a.token)
    broker.open_session("a3", identity=LOCAL)
    # An abandoned session counts until its lease ends, then frees its place.
    clock.advance(16)
    await broker.finish_background_work()
    broker.open_session("a4", identity=LOCAL)
    broker.open_session("a5", identity=LOCAL)


async def test_item12_requests_per_session(
    small: tuple[Broker, SimMechanism, ManualClock],
) -> None:
    broker, sim, _ = small
    pid, _ = sim.spawn_process(1)
    a = broker.open_session("a", identity=LOCAL)
    await broker.set_breakpoint(a.token, _watch(pid, VAR))
    await broker.set_breakpoint(a.token, _watch(pid, VAR + 8))
    before = broker.list_breakpoints(a.token)
    with pytest.raises(ResourceExhausted, match="max_requests_per_session"):
        await broker.set_breakpoint(a.token, _watch(pid, VAR + 16))
    assert broker.list_breakpoints(a.token) == before


async def test_item12_hit_buffer_is_capped_by_the_limit_and_named() -> None:
    broker, _, _ = await _broker(max_hit_buffer=1000)
    try:
        broker.open_session("ok", identity=LOCAL, hit_buffer=1000)
        with pytest.raises(InvalidArgument) as err:
            broker.open_session("greedy", identity=LOCAL, hit_buffer=1_000_000)
        assert err.value.field == "hit_buffer"
        assert "max_hit_buffer" in err.value.reason
    finally:
        await broker.stop()


@pytest.mark.parametrize("scope", [Scope.PROCESS, Scope.THREAD])
@pytest.mark.parametrize("address", [0, 8, FIRST_PAGE - 8])
async def test_item12_an_address_below_the_first_page_is_invalid(
    scope: Scope, address: int
) -> None:
    broker, sim, _ = await _broker()
    try:
        pid, (tid,) = sim.spawn_process(1)
        a = broker.open_session("a", identity=LOCAL)
        spec = BreakpointSpec(
            scope, address, 8, Access.WRITE, pid=pid, tid=tid * (scope is Scope.THREAD)
        )
        before = broker.slot_map()
        with pytest.raises(InvalidArgument) as err:
            await broker.set_breakpoint(a.token, spec)
        assert err.value.field == "spec.address"
        assert "below the first page" in err.value.reason
        assert broker.slot_map() == before
        assert broker.list_breakpoints(a.token) == ()
        await broker.set_breakpoint(a.token, _watch(pid, FIRST_PAGE))  # the first page is fine
    finally:
        await broker.stop()


async def test_item12_the_memory_budget_refuses_sessions_and_spares_the_reader() -> None:
    # Room for 3 sessions and 300 events.
    budget = 3 * SESSION_BYTES + 300 * EVENT_BYTES
    broker, sim, _ = await _broker(memory_budget_bytes=budget)
    try:
        pid, (tid,) = sim.spawn_process(1)
        hog = broker.open_session("hog", identity=LOCAL, hit_buffer=10_000)
        reader = broker.open_session("reader", identity=LOCAL)
        await broker.set_breakpoint(hog.token, _watch(pid, VAR))
        await broker.set_breakpoint(reader.token, _watch(pid, VAR + 8))
        stream = broker.events(reader.token)
        await asyncio.wait_for(anext(stream), 1)  # its state events
        for n in range(400):  # the hog never reads: its hits pile up to the budget
            sim.touch(pid, tid, VAR, Access.WRITE, n.to_bytes(8, "little"))
        await broker.finish_background_work()
        assert broker.budget.pressed
        assert broker.budget.used_bytes <= budget + 100 * EVENT_BYTES
        with pytest.raises(ResourceExhausted, match="memory_budget_bytes"):
            broker.open_session("late", identity=LOCAL)
        got = []
        for n in range(50):  # the reader still gets every one of its hits
            sim.touch(pid, tid, VAR + 8, Access.WRITE, n.to_bytes(8, "little"))
            await broker.finish_background_work()
            got += await asyncio.wait_for(anext(stream), 1)
        hits = [e.kind for e in got if isinstance(e.kind, Hit)]
        assert len(hits) == 50
        assert not [e for e in got if isinstance(e.kind, HitsDropped)]
        # The hog's session closed: the budget is relieved and sessions open again.
        await broker.close_session(hog.token)
        assert not broker.budget.pressed
        broker.open_session("late", identity=LOCAL)
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await broker.stop()


async def test_item12_describe_lists_every_limit() -> None:
    broker, _, _ = await _broker(max_streams_per_identity=7)
    try:
        shown = {x.name: x.value for x in broker.describe().limits}
        assert shown["max_streams_per_identity"] == 7
        assert shown["memory_budget_bytes"] == Limits().memory_budget_bytes
        assert len(shown) == len(Limits().describe())
    finally:
        await broker.stop()
