"""Issue 12: GetSlotMap in pages, so that no answer a client can provoke nears 4 MiB."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert
from hwbkptd.api.pages import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_BYTES,
    MAX_PAGE_SIZE,
    breakpoints_page,
    decode_token,
    encode_token,
    slot_map_page,
)
from hwbkptd.core.broker_types import (
    BreakpointSpec,
    BreakpointView,
    SlotMapView,
    SlotView,
    ThreadSlotsView,
)
from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.model import Access, Chunk, PendingReason, RequestState, Scope

STOCK_CLIENT_LIMIT = 4 * 1024 * 1024
POOLS = ("exec", "data")


def _thread(pid: int, tid: int, holders: int) -> ThreadSlotsView:
    held = tuple((rid, f"session-{rid}", 25) for rid in range(1, holders + 1))
    return ThreadSlotsView(
        pid=pid,
        tid=tid,
        generation=1,
        slots=(
            SlotView("exec", 0, Chunk("exec", 0x1000, 1, Access.EXEC), held),
            SlotView("data", 0, Chunk("data", 0x2000, 8, Access.WRITE), held),
            SlotView("data", 1, None, ()),
        ),
    )


def _waiting(rid: int, tids: int) -> BreakpointView:
    spec = BreakpointSpec(Scope.PROCESS, 0x2000, 8, Access.WRITE, pid=100)
    return BreakpointView(
        id=rid,
        session_name=f"session-{rid}",
        spec=spec,
        state=RequestState.PENDING,
        reason=PendingReason.PRIORITY,
        installed_tids=(),
        pending_tids=tuple(range(1000, 1000 + tids)),
        chunks=(Chunk("data", 0x2000, 8, Access.WRITE),),
        hit_count=0,
        reported_count=0,
        priority=25,
    )


def _walk(
    view: SlotMapView, page_size: int = 0, pool: str = ""
) -> list[broker_pb2.GetSlotMapResponse]:
    pages = []
    token = ""
    while True:
        page = slot_map_page(view, pools=POOLS, page_size=page_size, page_token=token, pool=pool)
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def test_item12_a_map_of_8_mb_comes_in_pages_under_the_stock_limit() -> None:
    # 1,024 threads whose slots 400 requests share, and 400 waiting on every thread:
    # the answer of issue 12 (8.2 MB in one message).
    view = SlotMapView(
        threads=tuple(_thread(100, 1000 + i, 400) for i in range(1024)),
        waiting=tuple(_waiting(rid, 1024) for rid in range(1, 401)),
    )
    whole = convert.slot_map_to_proto(view)
    assert whole.ByteSize() > 2 * STOCK_CLIENT_LIMIT
    pages = _walk(view, page_size=MAX_PAGE_SIZE)
    assert len(pages) > 8
    assert max(p.ByteSize() for p in pages) <= MAX_PAGE_BYTES < STOCK_CLIENT_LIMIT
    joined = broker_pb2.GetSlotMapResponse(
        threads=[t for p in pages for t in p.threads],
        waiting=[w for p in pages for w in p.waiting],
    )
    assert joined == whole  # every entry once, in order


@given(
    threads=st.integers(0, 30),
    waiting=st.integers(0, 30),
    page_size=st.integers(0, 7),
)
def test_item12_pages_cover_the_map_once_in_order(
    threads: int, waiting: int, page_size: int
) -> None:
    view = SlotMapView(
        threads=tuple(_thread(100 + i % 3, 1000 + i, 2) for i in range(threads)),
        waiting=tuple(_waiting(rid, 3) for rid in range(1, waiting + 1)),
    )
    pages = _walk(view, page_size=page_size)
    per_page = page_size or DEFAULT_PAGE_SIZE
    assert all(len(p.threads) + len(p.waiting) <= per_page for p in pages)
    got = [(t.pid, t.tid) for p in pages for t in p.threads]
    assert got == sorted((t.pid, t.tid) for t in view.threads)
    assert [w.id for p in pages for w in p.waiting] == list(range(1, waiting + 1))
    assert not pages[-1].next_page_token


def test_item12_a_page_starts_after_the_last_entry_even_when_the_map_changed() -> None:
    view = SlotMapView(threads=tuple(_thread(100, t, 1) for t in (1, 2, 3, 4)), waiting=())
    first = slot_map_page(view, pools=POOLS, page_size=2, page_token="", pool="")
    assert [t.tid for t in first.threads] == [1, 2]
    # Thread 2 ends and thread 5 starts before the next page: nothing repeats or is skipped.
    changed = SlotMapView(threads=tuple(_thread(100, t, 1) for t in (1, 3, 4, 5)), waiting=())
    rest = slot_map_page(
        changed, pools=POOLS, page_size=10, page_token=first.next_page_token, pool=""
    )
    assert [t.tid for t in rest.threads] == [3, 4, 5]


def test_item12_filter_by_pool() -> None:
    view = SlotMapView(threads=(_thread(100, 1, 2),), waiting=(_waiting(1, 1),))
    (page,) = _walk(view, pool="exec")
    assert [s.pool for s in page.threads[0].slots] == ["exec"]
    assert list(page.waiting) == []  # its chunk is in the data pool
    (page,) = _walk(view, pool="data")
    assert [s.pool for s in page.threads[0].slots] == ["data", "data"]
    assert [w.id for w in page.waiting] == [1]
    with pytest.raises(InvalidArgument) as err:
        _walk(view, pool="dr")
    assert err.value.field == "pool"


@pytest.mark.parametrize(
    "token",
    ["x", "!!!", encode_token(("q", 1, 2)), "dDotMTox", "w" * 10_000, "\u00e9"],
)
def test_item12_a_token_the_broker_did_not_give_is_invalid(token: str) -> None:
    view = SlotMapView(threads=(), waiting=())
    with pytest.raises(InvalidArgument) as err:
        slot_map_page(view, pools=POOLS, page_size=0, page_token=token, pool="")
    assert err.value.field == "page_token"


@given(st.sampled_from(["t", "w"]), st.integers(0, 2**32), st.integers(0, 2**32))
def test_item12_tokens_round_trip(kind: str, a: int, b: int) -> None:
    assert decode_token(encode_token((kind, a, b))) == (kind, a, b)


def test_item12_a_sessions_requests_come_in_pages_under_the_cap() -> None:
    # 1,024 requests (the per-session limit) on a process of 10,000 threads: 30 MB at once.
    views = [_waiting(rid, 10_000) for rid in range(1, 1025)]
    assert sum(convert.breakpoint_to_proto(v).ByteSize() for v in views[:300]) > 4 * 1024 * 1024
    pages = []
    token = ""
    while True:
        page = breakpoints_page(views, page_size=MAX_PAGE_SIZE, page_token=token)
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    assert max(p.ByteSize() for p in pages) <= MAX_PAGE_BYTES
    assert [b.id for p in pages for b in p.breakpoints] == list(range(1, 1025))
    with pytest.raises(InvalidArgument) as err:
        breakpoints_page(views, page_size=0, page_token=encode_token(("t", 1, 1)))
    assert err.value.field == "page_token"
