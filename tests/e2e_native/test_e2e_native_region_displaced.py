"""Issue 9 item 9 on the native machine: a real process (vars.c), both armings.

A 32-byte watch on vars[0..3] holds all four debug registers; a stronger 8-byte watch
on vars[4] displaces it whole. The slot map shows one slot held and three free, the
``displaced`` event names vars[0] (whose register the stronger watch took), and the
writes say the same: nobody hears vars[1], the stronger watch hears vars[4], and
once it leaves the region is back and hears vars[2].
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from native_e2e_support import ARMINGS, Daemon, Target, expect_event, hits_of, native_daemon

import hwbkpt

pytestmark = [pytest.mark.native, pytest.mark.e2e]


@pytest.fixture(params=ARMINGS)
def native(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bins: dict[str, str]
) -> Iterator[Daemon]:
    d = native_daemon(tmp_path_factory.mktemp("native"), request.param)
    yield d
    assert d.stop() == 0, d.log()


def test_item9_native_displaced_region_names_the_taken_chunk(
    native: Daemon, vars_target: Target
) -> None:
    base, pid = vars_target.address, vars_target.pid
    with native.client() as client:
        ide = client.open_session("IDE")
        region = ide.watch(base, pid=pid, length=32)
        assert region.state is hwbkpt.BreakpointState.INSTALLED
        tracer = client.open_session("tracer")
        strong = tracer.watch(base + 32, pid=pid, priority="high")
        assert strong.state is hwbkpt.BreakpointState.INSTALLED

        event = expect_event(ide, "displaced")
        assert isinstance(event.payload, hwbkpt.Displaced)
        assert (event.payload.by_session, event.payload.tids) == ("tracer", (pid,))
        assert event.payload.taken == (hwbkpt.Chunk("dr", base, 8, hwbkpt.Access.WRITE),)

        (thread,) = client.slot_map(pid).threads
        held = [(s.index, s.chunk.address) for s in thread.slots if s.chunk is not None]
        assert held == [(0, base + 32)]
        assert [s.index for s in thread.slots if s.chunk is None and not s.external] == [1, 2, 3]

        vars_target.write(1, 11)
        vars_target.write(4, 44)
        hit = expect_event(tracer, "hit")
        assert isinstance(hit.payload, hwbkpt.Hit)
        assert (hit.payload.address, hit.payload.value_int) == (base + 32, 44)
        seen: list[hwbkpt.Event] = []
        tracer.remove(strong.id)
        expect_event(ide, "restored", seen=seen)
        assert hits_of(seen) == []  # vars[1] was written while nobody held it

        vars_target.write(2, 22)
        hit = expect_event(ide, "hit")
        assert isinstance(hit.payload, hwbkpt.Hit)
        assert hit.payload.address == base + 16
        # The value is the whole region; vars[2] is its third 8 bytes.
        assert hit.payload.value[16:24] == (22).to_bytes(8, "little")
        ide.close()
        tracer.close()
