"""The broker's records of live requests and their indexes."""

from __future__ import annotations

from hwbkptd.core.broker_types import BreakpointSpec, Identity
from hwbkptd.core.clock import ManualClock
from hwbkptd.core.model import Access, Chunk, Scope
from hwbkptd.core.records import RequestBook, new_record
from hwbkptd.core.sessions import SessionTable


async def test_index_by_process_and_thread() -> None:
    sessions = SessionTable(ManualClock(), lambda s: None)
    s = sessions.open("A", identity=Identity(), lease_seconds=1, hit_buffer=1, retention=1)
    s.cancel_lease()
    chunk = (Chunk("dr", 0x10, 8, Access.WRITE),)
    specs = {
        1: BreakpointSpec(Scope.PROCESS, 0x10, 8, Access.WRITE, pid=100, priority=30),
        2: BreakpointSpec(Scope.THREAD, 0x10, 8, Access.WRITE, pid=100, tid=101),
        3: BreakpointSpec(Scope.KERNEL, 0x10, 8, Access.READ),
    }
    index = RequestBook()
    for rid, spec in specs.items():
        index.add(new_record(rid, s, spec, chunk, read_emulated=True, value=b"v"))
    assert index.of_process(100) == [1, 2]
    assert index.of_thread(101) == [2]
    assert len(index) == 3
    assert 3 in index
    first = index[1]
    assert (first.request.priority, first.request.seq, first.request.session_name) == (30, 1, "A")
    assert index[2].request.priority == 25  # the default
    assert index[3].hits.emulated_read
    assert not first.hits.emulated_read
    assert first.hits.last_value == b"v"
    index.pop(2)
    assert index.of_process(100) == [1]
    assert index.of_thread(101) == []
    assert index.get(2) is None
