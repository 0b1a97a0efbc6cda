"""Event batches cut to size: no StreamEvents message a client can provoke nears 4 MiB.

A batch holds up to 256 events (core/eventlog.py MAX_BATCH); a state event lists every
thread a request applies to, so 256 of them on a process of 10,000 threads came to about
8 MB. A batch over ``MAX_MESSAGE_BYTES`` goes out as several messages, in order (one event
alone always goes, whatever its size).
"""

from __future__ import annotations

from collections.abc import Iterator

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.pages import MAX_PAGE_BYTES

__all__ = ["MAX_MESSAGE_BYTES", "split_events"]

MAX_MESSAGE_BYTES = MAX_PAGE_BYTES


def split_events(
    msg: broker_pb2.StreamEventsResponse, limit: int = MAX_MESSAGE_BYTES
) -> Iterator[broker_pb2.StreamEventsResponse]:
    if msg.ByteSize() <= limit:
        yield msg
        return
    part = broker_pb2.StreamEventsResponse()
    size = 0
    for event in msg.events:
        cost = event.ByteSize() + 6  # tag and length prefix
        if part.events and size + cost > limit:
            yield part
            part = broker_pb2.StreamEventsResponse()
            size = 0
        part.events.append(event)
        size += cost
    if part.events:
        yield part
