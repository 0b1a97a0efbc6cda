"""The change journal on its own, over a hand-made placement (issue 10)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hwbkptd.core.arbiter_journal import Journal, Placement
from hwbkptd.core.arbiter_types import SlotTable
from hwbkptd.core.model import Access, Chunk, PendingReason, Request, RequestState, Scope
from hwbkptd.core.placement import Entry

INST, PEND, PART = RequestState.INSTALLED, RequestState.PENDING, RequestState.PARTIAL
NONE, PRIO = PendingReason.NONE, PendingReason.PRIORITY
CHUNK = Chunk("dr", 0x1000, 8, Access.WRITE)


@dataclass
class Board:
    """A placement written by hand: installed tids per request, threads of one process."""

    threads: set[int] = field(default_factory=lambda: {10, 11})
    inst: dict[int, set[int]] = field(default_factory=dict)
    priority: dict[int, int] = field(default_factory=dict)

    def state(self, request_id: int) -> tuple[RequestState, PendingReason]:
        held = self.inst[request_id] & self.threads
        if held == self.threads:
            return INST, NONE
        return (PART if held else PEND), PRIO

    def installed(self, request_id: int) -> frozenset[int]:
        return frozenset(self.inst[request_id])

    def applicable(self, request_id: int) -> frozenset[int]:
        return frozenset(self.threads)

    def is_installed_in(self, request_id: int, tid: int) -> bool:
        return tid in self.inst[request_id]

    def contexts(self) -> frozenset[int]:
        return frozenset(self.threads)

    def members(self, tid: int) -> frozenset[int]:
        return frozenset(rid for rid, tids in self.inst.items() if tid in tids)

    def table(self, tid: int) -> SlotTable:
        return SlotTable(100, tid, 1, {"dr": ()}, {})

    def rank(self, request_id: int) -> Entry:
        return ((-self.priority[request_id], 1, request_id), request_id)

    def request(self, request_id: int) -> Request:
        return Request(
            id=request_id,
            seq=request_id,
            session_id=1,
            session_name="s",
            scope=Scope.PROCESS,
            pid=100,
            tid=0,
            address=CHUNK.address,
            length=8,
            access=Access.WRITE,
            priority=self.priority[request_id],
            chunks=(CHUNK,),
        )

    def admitted(self) -> frozenset[int]:
        return frozenset()

    def kernel_ranks(self) -> Sequence[Entry]:
        return ()


def test_issue10_journal_classifies_displaced_restored_gained_and_names_the_taker() -> None:
    board = Board(inst={1: {10, 11}, 2: set(), 3: {10}}, priority={1: 25, 2: 50, 3: 25})
    placement: Placement = board
    journal = Journal(placement)
    for rid in (1, 2, 3):
        journal.touch(rid)
    for tid in (10, 11):
        journal.before(tid, board.members(tid), board.table(tid))
    # Request 2 (stronger) takes thread 11 from request 1; request 3 gets thread 11 back.
    board.inst = {1: {10}, 2: {11}, 3: {10, 11}}
    delta = journal.finish()
    by_id = {c.request_id: c for c in delta.changes}
    assert [c.request_id for c in delta.changes] == [2, 1, 3]  # rank order
    one = by_id[1]
    assert (one.old_state, one.new_state, one.reason) == (INST, PART, PRIO)
    assert one.displaced == {11}
    assert one.displaced_by == {2: frozenset({11})}
    assert by_id[2].restored == {11}
    assert by_id[2].new_state is PART
    assert by_id[3].restored == {11}
    assert by_id[3].new_state is INST


def test_issue10_journal_reports_a_birth_as_gained_and_nothing_for_the_unchanged() -> None:
    board = Board(inst={1: {10, 11}, 2: {10, 11}}, priority={1: 25, 2: 25})
    journal = Journal(board)
    journal.born.add(12)
    journal.touch(1)
    journal.touch(2)
    board.threads.add(12)
    board.inst[1].add(12)
    board.inst[2].add(12)
    (change,) = [c for c in journal.finish().changes if c.request_id == 1]
    assert change.gained == {12}
    assert not change.restored
    # The journal starts afresh after each finish: nothing touched, nothing reported.
    assert journal.finish().changes == ()


def test_journal_always_reports_a_created_request() -> None:
    board = Board(inst={1: {10, 11}}, priority={1: 25})
    journal = Journal(board)
    journal.created = 1
    journal.seed(1)
    (change,) = journal.finish().changes
    assert (change.old_state, change.new_state, change.gained) == (PEND, INST, {10, 11})
