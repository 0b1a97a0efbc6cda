"""GetSlotMap and ListBreakpoints in pages: no answer a client can provoke nears 4 MiB.

The whole map of 1,024 threads under 400 kernel requests is about 8 MB. An answer
holds at most ``page_size`` entries (threads first, in the map's order, then the
waiting requests by id) and stops before ``MAX_PAGE_BYTES``; ``next_page_token``
names the last entry given, so the next page starts after it by position: what
changes between two pages is neither repeated nor shifts the rest. A filter by pool
keeps only that pool's slots and the waiting requests with a chunk in it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterator, Sequence

from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert
from hwbkptd.core.broker_types import BreakpointView, SlotMapView, ThreadSlotsView
from hwbkptd.core.errors import InvalidArgument

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_BYTES",
    "MAX_PAGE_SIZE",
    "breakpoints_page",
    "decode_token",
    "encode_token",
    "slot_map_page",
]

DEFAULT_PAGE_SIZE = 256
#: A larger page_size is taken as this (AIP-158: coerce, do not refuse).
MAX_PAGE_SIZE = 1000
#: An answer stops before this many bytes (one entry alone may pass it: it still goes).
MAX_PAGE_BYTES = 1024 * 1024

#: A position in the map: ("t", pid, tid) for a thread (the CPU context is pid 0,
#: tid 0, first), ("w", breakpoint id, 0) for a waiting request.
_Key = tuple[str, int, int]
_START: _Key = ("", 0, 0)


def encode_token(key: _Key) -> str:
    kind, a, b = key
    return base64.urlsafe_b64encode(f"{kind}:{a}:{b}".encode()).decode().rstrip("=")


def decode_token(token: str) -> _Key:
    """The position a page token names; INVALID_ARGUMENT ``page_token`` if it names none."""
    if not token:
        return _START
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        kind, a, b = text.split(":")
        key = (kind, int(a), int(b))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token", "not a token this broker gave out") from None
    if kind not in ("t", "w") or key[1] < 0 or key[2] < 0:
        raise InvalidArgument("page_token", "not a token this broker gave out")
    return key


def _entries(view: SlotMapView, pool: str) -> Iterator[tuple[_Key, object]]:
    threads = sorted(view.threads, key=lambda t: (t.pid, t.tid))
    for thread in threads:
        if pool:
            slots = tuple(s for s in thread.slots if s.pool == pool)
            thread = ThreadSlotsView(
                thread.pid, thread.tid, thread.generation, slots, thread.halted
            )
        yield ("t", thread.pid, thread.tid), thread
    for request in sorted(view.waiting, key=lambda r: r.id):
        if not pool or any(c.pool == pool for c in request.chunks):
            yield ("w", request.id, 0), request


def _after(key: _Key, start: _Key) -> bool:
    order = {"": 0, "t": 1, "w": 2}
    return (order[key[0]], key[1], key[2]) > (order[start[0]], start[1], start[2])


def slot_map_page(
    view: SlotMapView, *, pools: Collection[str], page_size: int, page_token: str, pool: str
) -> broker_pb2.GetSlotMapResponse:
    """One page of ``view`` as the answer to GetSlotMap."""
    if pool and pool not in pools:
        raise InvalidArgument("pool", f"no pool {pool!r} (pools: {', '.join(sorted(pools))})")
    start = decode_token(page_token)
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    answer = broker_pb2.GetSlotMapResponse()
    size = 0
    count = 0
    last: _Key | None = None
    for key, entry in _entries(view, pool):
        if not _after(key, start):
            continue
        if isinstance(entry, ThreadSlotsView):
            msg: broker_pb2.ThreadSlots | broker_pb2.Breakpoint = convert.slot_map_to_proto(
                SlotMapView(threads=(entry,), waiting=())
            ).threads[0]
        else:
            assert isinstance(entry, BreakpointView)
            msg = convert.breakpoint_to_proto(entry)
        # Field tag and length prefix: at most 6 bytes per entry.
        cost = msg.ByteSize() + 6
        if count >= limit or (count and size + cost > MAX_PAGE_BYTES):
            assert last is not None
            answer.next_page_token = encode_token(last)
            return answer
        if isinstance(msg, broker_pb2.ThreadSlots):
            answer.threads.append(msg)
        else:
            answer.waiting.append(msg)
        size += cost
        count += 1
        last = key
    return answer


def breakpoints_page(
    views: Sequence[BreakpointView], *, page_size: int, page_token: str
) -> broker_pb2.ListBreakpointsResponse:
    """One page of a session's requests (by id), cut like the slot map's pages."""
    start = decode_token(page_token)
    if start[0] == "t":
        raise InvalidArgument("page_token", "a slot map token, not a request list's")
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    answer = broker_pb2.ListBreakpointsResponse()
    size = 0
    last = 0
    for view in sorted(views, key=lambda v: v.id):
        if not _after(("w", view.id, 0), start):
            continue
        msg = convert.breakpoint_to_proto(view)
        cost = msg.ByteSize() + 6
        if len(answer.breakpoints) >= limit or (
            answer.breakpoints and size + cost > MAX_PAGE_BYTES
        ):
            answer.next_page_token = encode_token(("w", last, 0))
            return answer
        answer.breakpoints.append(msg)
        size += cost
        last = view.id
    return answer
