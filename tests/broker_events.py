"""What a session's event stream hands out now, read straight from a core ``Broker``
(the unit tests of the core drive it without gRPC)."""

from __future__ import annotations

import asyncio

from hwbkptd.core.broker import Broker
from hwbkptd.core.events import Event

__all__ = ["logged_events"]


async def logged_events(broker: Broker, token: str) -> list[Event]:
    """Every event the session's stream has now, after the broker's background work."""
    await broker.finish_background_work()
    stream = broker.events(token, 0)
    out: list[Event] = []
    try:
        while True:
            try:
                out.extend(await asyncio.wait_for(anext(stream), 0.02))
            except (TimeoutError, StopAsyncIteration):
                break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return out
