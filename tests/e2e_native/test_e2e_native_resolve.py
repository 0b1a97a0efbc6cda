"""Issue 15, item 1: ResolveLocation, the broker's names without placing anything, which
``hwbkpt dap`` answers ``dataBreakpointInfo`` by name with (tests/c/named.c, PIE and not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from native_e2e_support import Daemon, Target, native_daemon

import hwbkpt
from hwbkpt.dap._mapping import describe_resolution

pytestmark = [pytest.mark.native, pytest.mark.e2e]


@pytest.fixture
def daemon(bins: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    d = native_daemon(tmp_path)
    yield d
    assert d.stop() == 0, d.log()


@pytest.mark.parametrize("program", ["named", "named-pie"])
def test_item1_resolve_struct_member_matches_a_watch_by_name_and_places_nothing(
    bins: dict[str, str], daemon: Daemon, program: str
) -> None:
    t = Target([bins[program]])
    assert t.readline() == "ready"
    try:
        with hwbkpt.Client(daemon.address) as client, client.open_session("editor") as s:
            s.attach_process(t.pid)
            found = s.resolve_location(t.pid, "cfg.limit")
            # Nothing placed: no request, no slot taken.
            assert s.list() == []
            (thread,) = client.slot_map(t.pid).threads
            assert [x.chunk for x in thread.slots if x.chunk is not None] == []
            bp = s.watch("cfg.limit", pid=t.pid)
            assert bp.resolution is not None
            assert (found.address, found.length) == (bp.resolution.address, 8)
            assert found.symbol == "cfg.limit"
            assert found.type_name == "long int"
            text = describe_resolution(found, 0)
            assert text.startswith(f"cfg.limit at {found.address:#x} in {program}, 8 bytes"), text
            with pytest.raises(hwbkpt.HwbkptError) as err:
                s.resolve_location(t.pid, "cfg.nope")
            assert err.value.code in ("NOT_FOUND", "INVALID_ARGUMENT"), err.value
            assert "nope" in err.value.message
    finally:
        t.kill()
