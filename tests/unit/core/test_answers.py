"""What the broker shows: slot views, placement tids and the machine description."""

from __future__ import annotations

from hwbkptd.arch.layouts import parse_layout
from hwbkptd.core.answers import READ_EMULATION_NOTE, describe_machine, thread_slots
from hwbkptd.core.arbiter import SlotTable, TableEntry
from hwbkptd.core.broker_types import BrokerConfig
from hwbkptd.core.mechanism import MechanismInfo
from hwbkptd.core.model import Access, Chunk

CHUNK = Chunk("dr", 0x10, 8, Access.WRITE)


def names(rid: int) -> tuple[int, str, int]:
    return (rid, f"S{rid}", 25)


def test_every_slot_is_listed_with_holders_and_external_flags() -> None:
    table = SlotTable(
        pid=5,
        tid=6,
        generation=9,
        pools={"dr": (None, TableEntry(CHUNK, (3, 4)), None, None)},
        external={"dr": 2},
    )
    view = thread_slots(table, {"dr": 4}, names, halted=True, refused={"dr": {2}})
    assert (view.pid, view.tid, view.generation, view.halted) == (5, 6, 9, True)
    assert [s.index for s in view.slots] == [0, 1, 2, 3]
    assert view.slots[1].holders == ((3, "S3", 25), (4, "S4", 25))
    assert view.slots[1].chunk == CHUNK
    assert not view.slots[1].external
    # The refused index first, then counted from the top.
    assert [s.external for s in view.slots] == [False, False, True, True]


def test_no_external_without_a_count() -> None:
    table = SlotTable(0, 0, 1, {"dr": (None,) * 4}, {})
    view = thread_slots(table, {"dr": 4}, names, halted=False, refused={})
    assert not any(s.external for s in view.slots)
    assert all(s.chunk is None and s.holders == () for s in view.slots)


def test_describe_lists_pools_accesses_mechanisms_and_notes() -> None:
    x86 = parse_layout("sim")
    info = MechanismInfo("sim", True, notes=("n1",), arming="simulated")
    extra = MechanismInfo("ptrace", False, reason="not here")
    d = describe_machine(x86.arch, x86.pools, info, BrokerConfig(extra_mechanisms=(extra,)))
    assert d.notes == ("n1", READ_EMULATION_NOTE)
    assert d.mechanisms == (info, extra)
    assert d.arming == "simulated"
    arm = parse_layout("sim:arm64")
    d = describe_machine(arm.arch, arm.pools, info, BrokerConfig(machine="sim:arm64"))
    assert d.pool_accesses == {
        "exec": (Access.EXEC,),
        "data": (Access.WRITE, Access.READ, Access.READ_WRITE),
    }
    assert READ_EMULATION_NOTE not in d.notes
    assert d.machine == "sim:arm64"
