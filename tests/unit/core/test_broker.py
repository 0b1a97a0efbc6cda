"""The broker driven directly on the event loop, with the real arbiter and simulated machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.arch.sim import SimMechanism
from hwbkptd.core.answers import READ_EMULATION_NOTE
from hwbkptd.core.broker import BreakpointSpec, Broker, BrokerConfig, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.commit import EXTERNAL_RETRY_SECONDS
from hwbkptd.core.errors import (
    Aborted,
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from hwbkptd.core.events import (
    Displaced,
    Event,
    EventKind,
    HaltTimeout,
    Hit,
    HitsDropped,
    Removed,
    Restored,
    StateChanged,
    TargetExec,
    TargetExited,
)
from hwbkptd.core.model import (
    CPU_CONTEXT,
    Access,
    Action,
    Chunk,
    Filter,
    PendingReason,
    RequestState,
    Scope,
)

LOCAL = Identity()
VAR = 0x601000  # a user data address
KVAR = 0xFFFF_FFFF_8200_0000  # an x86_64 kernel data address


@dataclass
class World:
    broker: Broker
    sim: SimMechanism
    #: The broker's clock: leases, halt timeouts and retries run when a test moves it.
    clock: ManualClock


@dataclass
class Client:
    """Reads a session's events the way a reconnecting client would: after the last seen."""

    broker: Broker
    token: str
    name: str = ""
    seen: list[Event] = field(default_factory=list)

    async def take(self) -> list[Event]:
        await self.broker.finish_background_work()
        after = self.seen[-1].seq if self.seen else 0
        fresh = await collect(self.broker, self.token, after)
        self.seen.extend(fresh)
        return fresh

    async def kinds(self) -> list[EventKind]:
        return [e.kind for e in await self.take()]


async def collect(broker: Broker, token: str, after: int = 0) -> list[Event]:
    """Every event queued now (numbered above ``after``), then detach."""
    stream = broker.events(token, after)
    out: list[Event] = []
    try:
        while True:
            try:
                batch = await asyncio.wait_for(anext(stream), 0.02)
            except (TimeoutError, StopAsyncIteration):
                break
            out.extend(batch)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return out


def of(kinds: list[EventKind], cls: type) -> list:
    return [k for k in kinds if isinstance(k, cls)]


def watch(pid: int, address: int, **kw: object) -> BreakpointSpec:
    base: dict[str, object] = {"length": 8, "access": Access.WRITE}
    base.update(kw)
    return BreakpointSpec(Scope.PROCESS, address, pid=pid, **base)  # type: ignore[arg-type]


async def make_world(layout: str = "sim", **config: object) -> World:
    lay = parse_layout(layout)
    sim = SimMechanism(lay.arch, lay.pools)
    clock = ManualClock()
    broker = Broker(
        arch=lay.arch,
        pools=lay.pools,
        mechanism=sim,
        config=BrokerConfig(machine=lay.machine, **config),  # type: ignore[arg-type]
        clock=clock,
    )
    await broker.start()
    return World(broker, sim, clock)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await make_world()
    yield w
    await w.broker.stop()


async def open_client(w: World, name: str, **kw: object) -> Client:
    info = w.broker.open_session(name, identity=kw.pop("identity", LOCAL), **kw)  # type: ignore[arg-type]
    return Client(w.broker, info.token, name)


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


# --- issue 2 item 2: displacement, no hit while displaced, restore, hit with values -----
async def test_displacement_names_the_displacer_and_restore_brings_hits_back(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    b = await open_client(world, "B")
    views = [await broker.set_breakpoint(a.token, watch(pid, VAR + 8 * i)) for i in range(4)]
    assert [v.state for v in views] == [RequestState.INSTALLED] * 4
    assert [v.id for v in views] == [1, 2, 3, 4]
    await a.take()

    vb = await broker.set_breakpoint(b.token, watch(pid, VAR + 0x100, priority=75))
    assert vb.state is RequestState.INSTALLED
    kinds = await a.kinds()
    displaced = of(kinds, Displaced)
    # B's chunk went into the slot of the victim's (slot 3): that chunk is named as taken.
    taken = (Chunk("dr", VAR + 8 * 3, 8, Access.WRITE),)
    assert displaced == [
        Displaced(tids=(pid,), by_breakpoint_id=vb.id, by_session="B", by_priority=75, taken=taken)
    ]
    victim = next(e.breakpoint_id for e in a.seen if isinstance(e.kind, Displaced))
    assert victim == 4  # the newest of equal priority goes first
    states = [k for k in kinds if isinstance(k, StateChanged)]
    assert states[-1].state is RequestState.PENDING
    assert states[-1].reason is PendingReason.PRIORITY

    victim_address = VAR + 8 * 3
    assert sim.touch(pid, 0, victim_address, Access.WRITE, u64(7)) == []
    assert of(await a.kinds(), Hit) == []

    await broker.remove_breakpoint(b.token, vb.id)
    kinds = await a.kinds()
    assert of(kinds, Restored) == [Restored(tids=(pid,))]
    assert of(kinds, StateChanged)[-1].state is RequestState.INSTALLED
    sim.touch(pid, 0, victim_address, Access.WRITE, u64(9))
    hits = of(await a.kinds(), Hit)
    assert len(hits) == 1
    assert hits[0].value == u64(9)
    assert hits[0].old_value == u64(7)  # what memory held when the slot came back
    assert hits[0].hit_count == 1
    assert of(await b.kinds(), Hit) == []
    assert of(await b.kinds(), Removed) == []  # already seen below
    assert [e.kind for e in b.seen if isinstance(e.kind, Removed)] == [Removed("client")]


async def test_first_hit_reports_the_value_read_at_installation(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    sim.write_memory(pid, VAR, u64(41))
    a = await open_client(world, "A")
    await broker.set_breakpoint(a.token, watch(pid, VAR))
    sim.touch(pid, pid, VAR, Access.WRITE, u64(42))
    sim.touch(pid, pid, VAR, Access.WRITE, u64(43))
    hits = of(await a.kinds(), Hit)
    assert [(h.old_value, h.value, h.hit_count) for h in hits] == [
        (u64(41), u64(42), 1),
        (u64(42), u64(43), 2),
    ]
    assert hits[0].pid == pid
    assert hits[0].tid == pid
    assert hits[0].access is Access.WRITE


# --- issue 2 item 3: identical chunks share one slot; both owners get each hit -------------
async def test_shared_slot_has_two_holders_and_both_get_each_hit(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    b = await open_client(world, "B")
    va = await broker.set_breakpoint(a.token, watch(pid, VAR))
    vb = await broker.set_breakpoint(b.token, watch(pid, VAR, priority=75))
    used = [s for s in broker.slot_map(pid).threads[0].slots if s.chunk is not None]
    assert len(used) == 1
    assert used[0].holders == ((vb.id, "B", 75), (va.id, "A", 25))
    reports = sim.touch(pid, 0, VAR, Access.WRITE, u64(5))
    assert len(reports) == 1
    assert set(broker.attribute(reports[0])) == {va.id, vb.id}
    for client, bid in ((a, va.id), (b, vb.id)):
        hits = [e for e in await client.take() if isinstance(e.kind, Hit)]
        assert [(e.breakpoint_id, e.kind.value) for e in hits] == [(bid, u64(5))]  # type: ignore[union-attr]


async def test_overlapping_regions_share_a_chunk_and_each_gets_its_own_value(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    b = await open_client(world, "B")
    await broker.set_breakpoint(a.token, watch(pid, VAR, length=16))  # two 8-byte chunks
    await broker.set_breakpoint(b.token, watch(pid, VAR, length=8))  # shares the first
    assert sum(s.chunk is not None for s in broker.slot_map(pid).threads[0].slots) == 2
    sim.touch(pid, 0, VAR, Access.WRITE, u64(3))
    (ha,) = of(await a.kinds(), Hit)
    (hb,) = of(await b.kinds(), Hit)
    assert ha.value == u64(3) + bytes(8)
    assert hb.value == u64(3)


# --- issue 2 item 4: arm64 pools are independent -----------------------------------------
async def test_arm64_exec_and_data_compete_only_inside_their_pool() -> None:
    w = await make_world("sim:arm64")
    try:
        broker, sim = w.broker, w.sim
        pid, _ = sim.spawn_process(1)
        a = await open_client(w, "A")
        b = await open_client(w, "B")
        data = [await broker.set_breakpoint(a.token, watch(pid, VAR + 8 * i)) for i in range(4)]
        execs = [
            await broker.set_breakpoint(
                a.token, watch(pid, 0x401000 + 4 * i, access=Access.EXEC, length=0)
            )
            for i in range(6)
        ]
        assert all(v.state is RequestState.INSTALLED for v in data + execs)
        assert execs[0].spec.length == 4
        # A seventh exec waits; the data pool is untouched by it.
        extra = await broker.set_breakpoint(
            b.token, watch(pid, 0x402000, access=Access.EXEC, length=4)
        )
        assert extra.state is RequestState.PENDING
        # A strong data watch displaces one data watch and no exec breakpoint.
        await a.take()
        strong = await broker.set_breakpoint(b.token, watch(pid, VAR + 0x80, priority=75))
        assert strong.state is RequestState.INSTALLED
        displaced = [e.breakpoint_id for e in await a.take() if isinstance(e.kind, Displaced)]
        assert displaced == [data[-1].id]
        views = {v.id: v for v in broker.list_breakpoints(a.token)}
        assert all(views[v.id].state is RequestState.INSTALLED for v in execs)
        reports = sim.touch(pid, 0, 0x401000 + 4 * 5, Access.EXEC)
        assert [r.pool for r in reports] == ["exec"]
    finally:
        await w.broker.stop()


# --- issue 2 item 5: kernel requests are all or nothing --------------------------------------
async def test_kernel_request_waits_for_the_crowded_thread_then_installs_everywhere(
    world: World,
) -> None:
    broker, sim = world.broker, world.sim
    pid, (t1, t2) = sim.spawn_process(2)
    a = await open_client(world, "A")
    k = await open_client(world, "K")
    for i in range(4):
        spec = BreakpointSpec(Scope.THREAD, VAR + 8 * i, 8, Access.WRITE, tid=t2, priority=75)
        await broker.set_breakpoint(a.token, spec)
    kv = await broker.set_breakpoint(k.token, BreakpointSpec(Scope.KERNEL, KVAR, 8, Access.WRITE))
    assert (kv.state, kv.reason) == (RequestState.PENDING, PendingReason.PRIORITY)
    smap = broker.slot_map()
    assert smap.threads[0].tid == CPU_CONTEXT
    assert all(s.chunk is None for s in smap.threads[0].slots)
    assert kv.id in [v.id for v in smap.waiting]
    # Not even the roomy thread has it: nothing reaches K.
    assert sim.touch(pid, t1, KVAR, Access.WRITE, u64(1)) == []

    sim.end_thread(t2)
    await broker.finish_background_work()
    (view,) = broker.list_breakpoints(k.token)
    assert view.state is RequestState.INSTALLED
    assert sim.table(CPU_CONTEXT) is not None
    assert any(e is not None for e in sim.table(CPU_CONTEXT).pools["dr"])  # type: ignore[union-attr]
    sim.touch(pid, t1, KVAR, Access.WRITE, u64(2))
    hits = of(await k.kinds(), Hit)
    assert len(hits) == 1
    assert hits[0].tid == t1
    assert hits[0].value == u64(2)
    # a's thread-scope requests ended with their thread.
    gone = [k for k in await a.kinds() if isinstance(k, TargetExited | Removed)]
    assert gone[:2] == [TargetExited(pid=pid, tid=t2, exit_code=0), Removed("target_exited")]


# --- issue 2 item 6: leases, resume, replay --------------------------------------------------
async def test_lease_end_removes_requests_and_restores_what_they_displaced(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A", lease_seconds=60)
    b = await open_client(world, "B", lease_seconds=20)
    for i in range(4):
        await broker.set_breakpoint(a.token, watch(pid, VAR + 8 * i))
    vb = await broker.set_breakpoint(b.token, watch(pid, VAR + 0x100, priority=75))
    assert vb.state is RequestState.INSTALLED
    await a.take()
    # b never attaches a stream (its client was killed): the lease runs out.
    world.clock.advance(19)
    await broker.finish_background_work()
    assert broker.list_breakpoints(b.token) == (vb,)  # still alive
    world.clock.advance(20)  # b's last call restarted its lease
    await broker.finish_background_work()
    with pytest.raises(NotFound) as err:
        broker.list_breakpoints(b.token)
    assert err.value.field == "token"
    kinds = await a.kinds()
    assert of(kinds, Restored) == [Restored(tids=(pid,))]
    holders = [s.holders for s in broker.slot_map(pid).threads[0].slots]
    assert all(h[0][1] == "A" for h in holders)


async def test_attached_stream_keeps_the_session_alive_past_its_lease(world: World) -> None:
    broker = world.broker
    info = broker.open_session("S", lease_seconds=10, identity=LOCAL)
    stream = broker.events(info.token)
    reader = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # the reader attaches and waits for events
    world.clock.advance(25)
    await broker.finish_background_work()
    assert broker.list_breakpoints(info.token) == ()  # still alive
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await stream.aclose()  # type: ignore[attr-defined]
    world.clock.advance(9)
    await broker.finish_background_work()
    assert broker.resume_session(info.token).session_id == info.session_id
    world.clock.advance(10)
    await broker.finish_background_work()
    with pytest.raises(NotFound):
        broker.resume_session(info.token)


async def test_reconnect_within_lease_replays_missed_events_without_gaps(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    info = broker.open_session("A", lease_seconds=5, identity=LOCAL)
    await broker.set_breakpoint(info.token, watch(pid, VAR))
    first = await collect(broker, info.token)
    assert [e.seq for e in first] == [1]
    # The client is gone; things happen.
    for n in range(5):
        sim.touch(pid, 0, VAR, Access.WRITE, u64(n))
    resumed = broker.resume_session(info.token)
    assert resumed.session_id == info.session_id
    assert resumed.last_seq == 6
    missed = await collect(broker, info.token, after=1)
    assert [e.seq for e in missed] == [2, 3, 4, 5, 6]
    assert [e.kind.value for e in missed if isinstance(e.kind, Hit)] == [u64(n) for n in range(5)]
    # A client that lost even what it was handed can ask from the start.
    everything = await collect(broker, info.token, after=0)
    assert [e.seq for e in everything] == [1, 2, 3, 4, 5, 6]


async def test_newer_stream_ends_the_older_one(world: World) -> None:
    broker = world.broker
    info = broker.open_session("A", identity=LOCAL)
    old = broker.events(info.token)
    pending = asyncio.ensure_future(anext(old))
    await asyncio.sleep(0)  # the old reader attaches and waits
    new = broker.events(info.token)
    new_pending = asyncio.ensure_future(anext(new))
    await asyncio.sleep(0)  # the new one attaches
    with pytest.raises(Aborted, match="replaced by a newer stream"):  # issue 12
        await asyncio.wait_for(pending, 1)
    assert not new_pending.done()
    new_pending.cancel()
    await asyncio.gather(new_pending, return_exceptions=True)


# --- hits: filters, read emulation, buffers ----------------------------------------------
async def test_filters_changed_only_equals_ignore_first_stop_after(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    changed = await broker.set_breakpoint(
        a.token, watch(pid, VAR, filter=Filter(changed_only=True))
    )
    equals = await broker.set_breakpoint(a.token, watch(pid, VAR + 8, filter=Filter(equals=u64(2))))
    ignore = await broker.set_breakpoint(
        a.token, watch(pid, VAR + 16, filter=Filter(ignore_first=2))
    )
    stop = await broker.set_breakpoint(a.token, watch(pid, VAR + 24, filter=Filter(stop_after=2)))
    for value in (0, 1, 1, 2, 2, 3):
        for offset in (0, 8, 16, 24):
            sim.touch(pid, 0, VAR + offset, Access.WRITE, u64(value))
    events = await a.take()
    hits: dict[int, list[Hit]] = {}
    for e in events:
        if isinstance(e.kind, Hit):
            hits.setdefault(e.breakpoint_id, []).append(e.kind)
    assert [h.value for h in hits[changed.id]] == [u64(1), u64(2), u64(3)]
    assert [h.hit_count for h in hits[changed.id]] == [2, 4, 6]
    assert [h.value for h in hits[equals.id]] == [u64(2), u64(2)]
    assert [h.hit_count for h in hits[ignore.id]] == [3, 4, 5, 6]
    assert [h.value for h in hits[stop.id]] == [u64(0), u64(1)]
    removed = [e.kind for e in events if e.breakpoint_id == stop.id and isinstance(e.kind, Removed)]
    assert removed == [Removed("stop_after")]
    views = {v.id: v for v in broker.list_breakpoints(a.token)}
    assert stop.id not in views
    assert (views[changed.id].hit_count, views[changed.id].reported_count) == (6, 3)


async def test_read_watch_on_x86_is_armed_rw_and_writes_are_filtered(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    view = await broker.set_breakpoint(a.token, watch(pid, VAR, access=Access.READ))
    assert view.chunks[0].access is Access.READ_WRITE
    assert sim.touch(pid, 0, VAR, Access.WRITE, u64(1))  # the slot traps...
    assert of(await a.kinds(), Hit) == []  # ...but a write is not a read
    sim.touch(pid, 0, VAR, Access.READ, size=8)
    (hit,) = of(await a.kinds(), Hit)
    assert hit.access is Access.READ
    assert hit.value == u64(1)
    assert hit.hit_count == 1
    assert READ_EMULATION_NOTE in broker.describe().notes


async def test_hit_buffer_overflow_drops_hits_and_counts_them_exactly(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A", hit_buffer=3)
    view = await broker.set_breakpoint(a.token, watch(pid, VAR))
    for n in range(10):
        sim.touch(pid, 0, VAR, Access.WRITE, u64(n))
    # State events are never dropped, even with the hit buffer full.
    await broker.modify_breakpoint(a.token, view.id, priority=30)
    events = await a.take()
    kinds = [e.kind for e in events]
    assert [k.value for k in of(kinds, Hit)] == [u64(0), u64(1), u64(2)]
    assert of(kinds, HitsDropped) == [HitsDropped(7)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    # After draining, hits flow again; later drops are counted afresh.
    for n in range(10, 15):
        sim.touch(pid, 0, VAR, Access.WRITE, u64(n))
    kinds = await a.kinds()
    assert [k.value for k in of(kinds, Hit)] == [u64(10), u64(11), u64(12)]
    assert of(kinds, HitsDropped) == [HitsDropped(2)]
    (v,) = broker.list_breakpoints(a.token)
    assert v.hit_count == 15
    assert v.reported_count == 15


# --- HALT --------------------------------------------------------------------------------
async def test_halt_keeps_the_thread_until_resumed(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    a = await open_client(world, "A")
    await broker.set_breakpoint(a.token, watch(pid, VAR, action=Action.HALT))
    (report,) = sim.touch(pid, tid, VAR, Access.WRITE, u64(1))
    assert report.halted
    await broker.finish_background_work()
    assert sim.halted(tid)
    (hit,) = of(await a.kinds(), Hit)
    assert hit.halted
    assert broker.slot_map(pid).threads[0].halted
    with pytest.raises(FailedPrecondition):
        sim.touch(pid, tid, VAR, Access.WRITE, u64(2))
    with pytest.raises(FailedPrecondition):
        await broker.resume_threads(a.token, [tid + 1])
    assert await broker.resume_threads(a.token, []) == (tid,)
    assert not sim.halted(tid)
    with pytest.raises(FailedPrecondition):
        await broker.resume_threads(a.token, [tid])


async def test_a_shared_halt_waits_for_every_session(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    a = await open_client(world, "A")
    b = await open_client(world, "B")
    await broker.set_breakpoint(a.token, watch(pid, VAR, action=Action.HALT))
    await broker.set_breakpoint(b.token, watch(pid, VAR, action=Action.HALT))
    sim.touch(pid, tid, VAR, Access.WRITE, u64(1))
    await broker.finish_background_work()
    assert await broker.resume_threads(a.token, [tid]) == (tid,)
    assert sim.halted(tid)  # b still holds it
    await broker.close_session(b.token)  # ending a session releases its halts
    assert not sim.halted(tid)


async def test_halt_timeout_resumes_and_tells_the_session() -> None:
    w = await make_world(halt_timeout_seconds=30.0)
    try:
        pid, (tid,) = w.sim.spawn_process(1)
        a = await open_client(w, "A", lease_seconds=3600)  # outlives the halt timeout
        view = await w.broker.set_breakpoint(a.token, watch(pid, VAR, action=Action.HALT))
        w.sim.touch(pid, tid, VAR, Access.WRITE, u64(1))
        await w.broker.finish_background_work()
        w.clock.advance(29)
        await w.broker.finish_background_work()
        assert w.sim.halted(tid)
        w.clock.advance(1)
        await w.broker.finish_background_work()
        assert not w.sim.halted(tid)
        events = await a.take()
        timeouts = [(e.breakpoint_id, e.kind) for e in events if isinstance(e.kind, HaltTimeout)]
        assert timeouts == [(view.id, HaltTimeout(tid=tid, seconds=30.0))]
    finally:
        await w.broker.stop()


async def test_a_filtered_halt_hit_lets_the_thread_go(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    a = await open_client(world, "A")
    spec = watch(pid, VAR, action=Action.HALT, filter=Filter(ignore_first=1))
    await broker.set_breakpoint(a.token, spec)
    sim.touch(pid, tid, VAR, Access.WRITE, u64(1))
    await broker.finish_background_work()
    assert not sim.halted(tid)
    sim.touch(pid, tid, VAR, Access.WRITE, u64(2))
    await broker.finish_background_work()
    assert sim.halted(tid)


async def test_modify_to_halt_reaches_the_mechanism(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    a = await open_client(world, "A")
    view = await broker.set_breakpoint(a.token, watch(pid, VAR))
    modified = await broker.modify_breakpoint(a.token, view.id, action=Action.HALT)
    assert modified.spec.action is Action.HALT
    entry = sim.table(tid).pools["dr"][0]  # type: ignore[union-attr]
    assert entry is not None
    assert entry.halt
    sim.touch(pid, tid, VAR, Access.WRITE, u64(1))
    await broker.finish_background_work()
    assert sim.halted(tid)


# --- thread and process life -----------------------------------------------------------
async def test_new_thread_gets_the_process_requests(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    view = await broker.set_breakpoint(a.token, watch(pid, VAR))
    await a.take()
    tid = sim.spawn_thread(pid)
    await broker.finish_background_work()
    entry = sim.table(tid).pools["dr"][0]  # type: ignore[union-attr]
    assert entry is not None
    assert entry.chunk.address == VAR
    (now,) = broker.list_breakpoints(a.token)
    assert now.installed_tids == (pid, tid)
    # Thread birth is not a restore.
    assert of(await a.kinds(), Restored) == []
    sim.touch(pid, tid, VAR, Access.WRITE, u64(4))
    (hit,) = of(await a.kinds(), Hit)
    assert hit.tid == tid
    assert view.id == now.id


async def test_process_exit_and_exec_end_requests_with_the_target_event(world: World) -> None:
    broker, sim = world.broker, world.sim
    p1, _ = sim.spawn_process(2)
    p2, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    v1 = await broker.set_breakpoint(a.token, watch(p1, VAR))
    v2 = await broker.set_breakpoint(a.token, watch(p2, VAR))
    await a.take()
    sim.end_process(p1, 3)
    sim.exec_process(p2)
    events = await a.take()
    by_id: dict[int, list[EventKind]] = {}
    for e in events:
        by_id.setdefault(e.breakpoint_id, []).append(e.kind)
    assert by_id[v1.id] == [TargetExited(pid=p1, tid=0, exit_code=3), Removed("target_exited")]
    assert by_id[v2.id] == [TargetExec(pid=p2), Removed("target_exec")]
    assert broker.list_breakpoints(a.token) == ()
    with pytest.raises(NotFound):
        broker.slot_map(p1)


# --- slots held outside the broker -----------------------------------------------------
async def test_refused_slots_make_requests_pending_external_then_retry(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    sim.reserve_external(tid, "dr", 2)
    a = await open_client(world, "A")
    views = [await broker.set_breakpoint(a.token, watch(pid, VAR + 8 * i)) for i in range(3)]
    assert [v.state for v in views[:2]] == [RequestState.INSTALLED] * 2
    assert (views[2].state, views[2].reason) == (RequestState.PENDING, PendingReason.EXTERNAL)
    events = [e for e in await a.take() if e.breakpoint_id == views[2].id]
    # No flapping: the owner hears the outcome only, not "installed" then "pending".
    assert [e.kind for e in events] == [
        StateChanged(RequestState.PENDING, PendingReason.EXTERNAL, (), (tid,))
    ]
    slots = broker.slot_map(pid).threads[0].slots
    assert sum(s.external for s in slots) == 2
    assert sim.touch(pid, tid, VAR + 16, Access.WRITE, u64(1)) == []

    sim.reserve_external(tid, "dr", 0)  # the other debugger lets go
    sim.spawn_process(1)  # any change retries
    await broker.finish_background_work()
    kinds = [e.kind for e in await a.take() if e.breakpoint_id == views[2].id]
    assert kinds == [
        Restored(tids=(tid,)),
        StateChanged(RequestState.INSTALLED, PendingReason.NONE, (tid,), ()),
    ]
    assert len(sim.touch(pid, tid, VAR + 16, Access.WRITE, u64(1))) == 1


async def test_held_outside_slots_are_retried_on_the_broker_clock(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    sim.reserve_external(tid, "dr", 4)
    a = await open_client(world, "A", lease_seconds=3600)
    view = await broker.set_breakpoint(a.token, watch(pid, VAR))
    assert view.reason is PendingReason.EXTERNAL
    sim.reserve_external(tid, "dr", 0)  # the other debugger lets go; nothing else changes
    world.clock.advance(EXTERNAL_RETRY_SECONDS - 0.5)
    await broker.finish_background_work()
    assert broker.list_breakpoints(a.token)[0].state is RequestState.PENDING
    world.clock.advance(0.5)
    await broker.finish_background_work()
    assert broker.list_breakpoints(a.token)[0].state is RequestState.INSTALLED


# --- sessions and the rest of the API --------------------------------------------------
async def _drain(stream: AsyncIterator[Sequence[Event]]) -> tuple[list[Event], Exception]:
    """A stream's events and the error it ends with (issue 12: never a quiet end)."""
    got: list[Event] = []
    try:
        async for batch in stream:
            got += batch
    except Exception as err:
        return got, err
    raise AssertionError("the stream ended without saying why")


async def test_close_session_removes_requests_and_restores(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    b = await open_client(world, "B")
    for i in range(4):
        await broker.set_breakpoint(a.token, watch(pid, VAR + 8 * i))
    vb = await broker.set_breakpoint(b.token, watch(pid, VAR + 0x80, priority=90))
    stream = broker.events(b.token)
    got = await asyncio.wait_for(anext(stream), 1)
    await a.take()
    await broker.close_session(b.token)
    rest, end = await _drain(stream)  # drains, then ends
    assert isinstance(end, FailedPrecondition)  # issue 12: it says the session was closed
    assert end.message == "the session was closed"
    assert [(e.breakpoint_id, e.kind) for e in rest] == [(vb.id, Removed("session_closed"))]
    assert got[0].seq == 1
    assert rest[0].seq == got[-1].seq + 1
    assert of(await a.kinds(), Restored) == [Restored(tids=(pid,))]
    with pytest.raises(NotFound):
        await broker.close_session(b.token)


async def test_concurrent_calls_do_not_interleave(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    a = await open_client(world, "A")
    views = await asyncio.gather(
        *(broker.set_breakpoint(a.token, watch(pid, VAR + 8 * i, priority=i)) for i in range(6))
    )
    assert sorted(v.id for v in views) == [1, 2, 3, 4, 5, 6]
    states = {v.id: v.state for v in broker.list_breakpoints(a.token)}
    assert sorted(states.values(), key=lambda s: s.value).count(RequestState.INSTALLED) == 4
    armed = sim.table(pid)
    assert armed is not None
    assert armed.generation == broker.slot_map(pid).threads[0].generation
    held = {s.holders[0][0] for s in broker.slot_map(pid).threads[0].slots if s.holders}
    assert held == {3, 4, 5, 6}  # the four strongest (priorities 2..5)


async def test_describe_reports_machine_pools_and_mechanism(world: World) -> None:
    d = world.broker.describe()
    assert (d.machine, d.arch, dict(d.pools)) == ("sim", "x86_64", {"dr": 4})
    assert set(d.pool_accesses["dr"]) == set(Access)
    assert d.mechanisms[0].name == "sim"
    assert d.mechanisms[0].available
    assert d.max_region_length == 32


async def test_attach_on_the_sim_is_a_failed_precondition(world: World) -> None:
    a = await open_client(world, "A")
    with pytest.raises(FailedPrecondition, match="native machine"):
        await world.broker.attach_process(a.token, 1)


async def test_stop_removes_everything_and_ends_streams() -> None:
    w = await make_world()
    pid, (tid,) = w.sim.spawn_process(1)
    a = await open_client(w, "A")
    view = await w.broker.set_breakpoint(a.token, watch(pid, VAR, action=Action.HALT))
    w.sim.touch(pid, tid, VAR, Access.WRITE, u64(1))
    stream = w.broker.events(a.token)
    await asyncio.wait_for(anext(stream), 1)
    await w.broker.stop()
    events, end = await _drain(stream)
    assert isinstance(end, Unavailable)  # issue 12: it says why
    # The request's removal, then the session's own last event (issue 14, item 4).
    assert [(e.breakpoint_id, e.kind) for e in events] == [
        (view.id, Removed("shutdown")),
        (0, Removed("shutdown")),
    ]
    assert not w.sim.halted(tid)
    assert w.sim.closed
    assert view.id == 1
    with pytest.raises(NotFound):
        w.broker.list_breakpoints(a.token)


# --- bad input: the right error, and nothing changes --------------------------------------
def _bad_specs(pid: int, tid: int, other_tid: int) -> list[tuple[BreakpointSpec, type, str]]:
    P = Scope.PROCESS
    return [
        (BreakpointSpec(P, VAR, 0, Access.WRITE, pid=pid), InvalidArgument, "spec.length"),
        (BreakpointSpec(P, VAR, 33, Access.WRITE, pid=pid), InvalidArgument, "spec.length"),
        (BreakpointSpec(P, VAR + 1, 32, Access.WRITE, pid=pid), InvalidArgument, "spec.length"),
        (BreakpointSpec(P, VAR, 4, Access.EXEC, pid=pid), InvalidArgument, "spec.length"),
        (BreakpointSpec(P, KVAR, 8, Access.WRITE, pid=pid), InvalidArgument, "spec.address"),
        (BreakpointSpec(Scope.KERNEL, VAR, 8, Access.WRITE), InvalidArgument, "spec.address"),
        (BreakpointSpec(P, 1 << 60, 8, Access.WRITE, pid=pid), InvalidArgument, "spec.address"),
        (BreakpointSpec(P, VAR, 8, Access.WRITE, pid=999), NotFound, "spec.pid"),
        (BreakpointSpec(Scope.THREAD, VAR, 8, Access.WRITE, tid=999), NotFound, "spec.tid"),
        (BreakpointSpec(Scope.THREAD, VAR, 8, Access.WRITE), InvalidArgument, "spec.tid"),
        (BreakpointSpec(P, VAR, 8, Access.WRITE), InvalidArgument, "spec.pid"),
        (
            BreakpointSpec(Scope.THREAD, VAR, 8, Access.WRITE, pid=pid, tid=other_tid),
            InvalidArgument,
            "spec.pid",
        ),
        (
            BreakpointSpec(P, VAR, 8, Access.WRITE, pid=pid, priority=101),
            InvalidArgument,
            "spec.priority",
        ),
        (
            BreakpointSpec(P, VAR, 8, Access.WRITE, pid=pid, priority=-1),
            InvalidArgument,
            "spec.priority",
        ),
        (BreakpointSpec("bogus", VAR, 8, Access.WRITE, pid=pid), InvalidArgument, "spec.scope"),  # type: ignore[arg-type]
        (
            BreakpointSpec(P, VAR, 8, Access.WRITE, pid=pid, filter=Filter(equals=b"\x01")),
            InvalidArgument,
            "spec.filter.equals",
        ),
        (
            BreakpointSpec(Scope.KERNEL, KVAR, 8, Access.WRITE, action=Action.HALT),
            InvalidArgument,
            "spec.action",
        ),
        (BreakpointSpec(P, VAR, 8, Access.WRITE, pid=pid, symbol="main"), FailedPrecondition, ""),
    ]


async def test_bad_specs_get_precise_errors_and_change_nothing(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, (tid,) = sim.spawn_process(1)
    _, (other,) = sim.spawn_process(1)
    a = await open_client(world, "A")
    b = await open_client(world, "B")
    await broker.set_breakpoint(a.token, watch(pid, VAR))
    vb = await broker.set_breakpoint(b.token, watch(pid, VAR + 8))
    before = (broker.slot_map(), broker.list_breakpoints(a.token))
    for spec, error, fieldname in _bad_specs(pid, tid, other):
        with pytest.raises(error) as caught:
            await broker.set_breakpoint(a.token, spec)
        if fieldname:
            assert caught.value.field == fieldname, spec  # type: ignore[attr-defined]
        assert (broker.slot_map(), broker.list_breakpoints(a.token)) == before, spec
    calls = [
        (broker.remove_breakpoint(a.token, vb.id), PermissionDenied, ""),  # b's request
        (broker.modify_breakpoint(a.token, vb.id, priority=90), PermissionDenied, ""),
        (broker.remove_breakpoint(a.token, 999), NotFound, "breakpoint_id"),
        (broker.modify_breakpoint(a.token, 1, priority=101), InvalidArgument, "priority"),
        (broker.set_breakpoint("nope", watch(pid, VAR)), NotFound, "token"),
        (broker.resume_threads(a.token, [tid]), FailedPrecondition, ""),
    ]
    for call, error, fieldname in calls:
        with pytest.raises(error) as caught:
            await call
        if fieldname:
            assert caught.value.field == fieldname  # type: ignore[attr-defined]
        assert (broker.slot_map(), broker.list_breakpoints(a.token)) == before
    with pytest.raises(NotFound):
        broker.slot_map(4242)


@pytest.mark.parametrize(
    ("name", "field"),
    [("", "name"), ("x" * 129, "name"), ("x" * 10_000_000, "name"), ("bad\nname", "name")],
)
async def test_bad_session_names(world: World, name: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        world.broker.open_session(name, identity=LOCAL)
    assert caught.value.field == field


async def test_identity_limits(world: World) -> None:
    broker, sim = world.broker, world.sim
    pid, _ = sim.spawn_process(1)
    weak = Identity(name="guest", may_kernel=False, max_priority=50, may_halt=False, max_requests=1)
    g = await open_client(world, "G", identity=weak)
    cases: list[tuple[BreakpointSpec, type[BrokerError]]] = [
        (watch(pid, VAR, priority=75), PermissionDenied),
        (watch(pid, VAR, action=Action.HALT), PermissionDenied),
        (BreakpointSpec(Scope.KERNEL, KVAR, 8, Access.WRITE), PermissionDenied),
    ]
    for spec, error in cases:
        with pytest.raises(error):
            await broker.set_breakpoint(g.token, spec)
    await broker.set_breakpoint(g.token, watch(pid, VAR, priority=50))
    with pytest.raises(ResourceExhausted):
        await broker.set_breakpoint(g.token, watch(pid, VAR + 8))
