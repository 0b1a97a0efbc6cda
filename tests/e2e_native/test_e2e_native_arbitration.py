"""Issue 3 item 3: five clients with mixed priorities on one real thread.

The same sequence of requests goes to a native broker (a real process, eight variables
written only on command) and to a simulated one. After every change the native slot map
equals the simulated one, slot by slot; then every variable is written once and each
session gets exactly the hits of its installed requests, with value and old value: a
displaced request hears nothing while displaced and every hit after its restore.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from e2e_support import start_daemon
from native_e2e_support import (
    ARMINGS,
    Daemon,
    Target,
    native_daemon,
    tracer_pid,
    until,
)

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]

NAMES = {"ide": "normal", "logger": "low", "ide2": "normal", "gdb": "debugger", "tracer": "high"}

# (operation, session, variable index, priority)
Op = tuple[str, str, int, str]
OPS: list[Op] = [
    ("watch", "ide", 0, "normal"),
    ("watch", "ide", 1, "normal"),
    ("watch", "logger", 2, "low"),
    ("watch", "logger", 3, "low"),
    ("watch", "ide2", 4, "normal"),  # five requests, four slots: logger's second waits
    ("watch", "gdb", 5, "debugger"),  # displaces logger's first
    ("watch", "tracer", 6, "high"),  # displaces ide2
    ("watch", "tracer", 0, "high"),  # the same chunk as ide's: one slot, two holders
    ("modify", "gdb", 5, "low"),  # gdb drops below ide2: ide2 is restored
    ("remove", "tracer", 6, ""),
    ("close", "ide", 0, ""),
    ("watch", "logger", 7, "high"),
    ("remove", "tracer", 0, ""),
    ("close", "gdb", 0, ""),
]

#: Seconds to listen for hits that must not come.
QUIET = 0.25

SlotKey = tuple[int, tuple[int, int, str] | None, tuple[str, ...]]


@dataclass
class Side:
    """One broker and the five clients' sessions on it."""

    daemon: Daemon
    pid: int
    clients: dict[str, hwbkpt.Client] = field(default_factory=dict)
    sessions: dict[str, hwbkpt.Session] = field(default_factory=dict)
    ids: dict[tuple[str, int], int] = field(default_factory=dict)

    def open(self) -> None:
        for name in NAMES:
            client = self.daemon.client()
            self.clients[name] = client
            self.sessions[name] = client.open_session(name, hit_buffer=10_000)

    def apply(self, op: Op, base: int) -> None:
        kind, name, var, priority = op
        session = self.sessions[name]
        if kind == "watch":
            bp = session.watch(base + 8 * var, pid=self.pid, priority=priority)
            self.ids[(name, var)] = bp.id
        elif kind == "modify":
            session.modify(self.ids[(name, var)], priority=priority)
        elif kind == "remove":
            session.remove(self.ids.pop((name, var)))
        else:
            session.close()
            for key in [k for k in self.ids if k[0] == name]:
                del self.ids[key]

    def slots(self) -> list[SlotKey]:
        (thread,) = self.clients["ide2"].slot_map(self.pid).threads
        return [
            (
                s.index,
                None if s.chunk is None else (s.chunk.address, s.chunk.length, s.chunk.access),
                tuple(sorted(h.session_name for h in s.holders)),
            )
            for s in thread.slots
        ]

    def external(self) -> list[int]:
        (thread,) = self.clients["ide2"].slot_map(self.pid).threads
        return [s.index for s in thread.slots if s.external]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture(params=ARMINGS)
def native(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]
) -> Iterator[Daemon]:
    d = native_daemon(tmp_path_factory.mktemp("native"), request.param)
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("sim"), machine="sim")
    yield d
    assert d.stop() == 0, d.log()


def _installed(side: Side, base: int) -> dict[int, set[str]]:
    """variable index -> the sessions whose request on it holds a slot (from the slot map)."""
    out: dict[int, set[str]] = {}
    for _, chunk, holders in side.slots():
        if chunk is not None:
            out.setdefault((chunk[0] - base) // 8, set()).update(holders)
    return out


Hits = dict[str, set[tuple[int, int, int]]]


def _drain(sessions: dict[str, hwbkpt.Session], got: Hits) -> None:
    """Take every event already received; hits as (breakpoint, value, old value)."""
    for name, session in sessions.items():
        while (ev := session.next_event(0)) is not None:
            hit = ev.payload
            if isinstance(hit, hwbkpt.Hit):
                got[name].add((ev.breakpoint_id, hit.value_int or 0, hit.old_value_int or 0))


def _collect(sessions: dict[str, hwbkpt.Session], want: Hits, timeout: float = 10.0) -> Hits:
    """Wait until every session has the hits it should, then listen a moment for extras."""
    got: Hits = {name: set() for name in sessions}

    def arrived() -> bool:
        _drain(sessions, got)
        return all(want[name] <= got[name] for name in sessions)

    until(arrived, timeout, f"hits {want} (got {got})")
    time.sleep(QUIET)
    _drain(sessions, got)
    return got


def test_five_clients_match_the_simulated_broker(
    native: Daemon, sim: Daemon, bins: dict[str, str]
) -> None:
    target = Target([bins["vars"]])
    assert target.readline() == "ready"
    base = target.address
    sim_pid = sim.spawn()[0]
    real = Side(native, target.pid)
    model = Side(sim, sim_pid)
    memory = [0] * 8
    waiting = shared = 0
    try:
        real.open()
        model.open()
        for step, op in enumerate(OPS, 1):
            model.apply(op, base)
            real.apply(op, base)
            assert real.slots() == model.slots(), (
                f"after step {step} {op}; slots held outside the broker: {real.external()} "
                "(perf breakpoints of other processes, e.g. tests running beside this one)"
            )
            installed = _installed(real, base)
            # One write of every variable; each live request hears it iff it holds a slot.
            previous = list(memory)
            for var in range(8):
                memory[var] = 1000 * step + var + 1
                target.write(var, memory[var])
            live = {n: s for n, s in real.sessions.items() if not s.closed}
            want: Hits = {
                name: {
                    (bid, memory[var], previous[var])
                    for (owner, var), bid in real.ids.items()
                    if owner == name and name in installed.get(var, set())
                }
                for name in live
            }
            assert _collect(live, want) == want, f"after step {step} {op}"
            waiting += sum(name not in installed.get(var, set()) for (name, var) in real.ids)
            shared = max(shared, *(len(h) for _, _, h in real.slots()))
        # The sequence did exercise displacement and a shared slot.
        assert waiting > 0
        assert shared == 2
        real.close()
        model.close()
        until(lambda: tracer_pid(target.pid) == 0, 10, "the broker to let the target go")
        target.write(0, 1)  # runs on, untraced, no trap left armed
        rc, _ = target.finish()
        assert rc == 0
    finally:
        real.close()
        model.close()
        target.kill()
