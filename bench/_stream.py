"""The client side of the hit benchmarks: one session, one watch, every hit counted.

Everything here goes through the public ``hwbkpt.AsyncClient`` over the broker's Unix
socket, the way an IDE or a tracer would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import hwbkpt

__all__ = ["Collected", "collect", "open_watch"]

#: The most hits a session may buffer (the broker's MAX_HIT_BUFFER).
MAX_HIT_BUFFER = 1_000_000


@dataclass
class Collected:
    """What one session received."""

    hits: int = 0
    #: Hits the broker dropped for this session (HITS_DROPPED events).
    dropped: int = 0
    #: Hits whose value was not the one expected (see ``collect``'s ``check``).
    wrong_values: int = 0
    #: time.perf_counter() at the first and the last hit received.
    first: float = 0.0
    last: float = 0.0
    exited: bool = False
    #: Per hit: CLOCK_MONOTONIC now minus the hit's value (when ``latency`` is set).
    latency_ns: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.last - self.first

    @property
    def rate(self) -> float:
        """Hits per second from the first hit received to the last."""
        return (self.hits - 1) / self.seconds if self.hits > 1 and self.seconds > 0 else 0.0


async def open_watch(
    client: hwbkpt.AsyncClient,
    name: str,
    pid: int,
    address: int,
    *,
    action: str = "notify",
    nonstop: bool = False,
    do_attach: bool = True,
    hit_buffer: int = 0,
) -> tuple[hwbkpt.AsyncSession, hwbkpt.Breakpoint]:
    """A session watching 8-byte writes to ``address`` in process ``pid``, installed."""
    session = await client.open_session(name, hit_buffer=min(hit_buffer, MAX_HIT_BUFFER))
    if do_attach:
        await session.attach_process(pid)
    bp = await session.set_breakpoint(
        scope="process",
        pid=pid,
        address=address,
        length=8,
        access="write",
        action=action,
        nonstop=nonstop,
    )
    if bp.state is not hwbkpt.BreakpointState.INSTALLED:
        raise RuntimeError(f"watch not installed: {bp.state} ({bp.pending_reason})")
    return session, bp


async def collect(
    session: hwbkpt.AsyncSession,
    expected: int,
    *,
    check: Callable[[int, int], bool] | None = None,
    latency: bool = False,
    on_hit: Callable[[hwbkpt.Hit], object] | None = None,
    limit: float = 120.0,
    settle: float = 1.0,
) -> Collected:
    """Read the session's events until ``expected`` hits (received or dropped) are in.

    ``check(n, value)`` is told the n-th hit's value (1-based). ``on_hit`` may be a
    coroutine function (the HALT benchmark resumes the thread there). After the target
    exits, events are read for ``settle`` more seconds of quiet, in case hits trail it;
    ``limit`` bounds the whole wait (seconds).
    """
    got = Collected()
    deadline = time.monotonic() + limit
    clock = time.clock_gettime_ns
    mono = time.CLOCK_MONOTONIC
    while got.hits + got.dropped < expected:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        wait = min(left, settle) if got.exited else left
        event = await session.next_event(timeout=wait)
        if event is None:
            break
        payload = event.payload
        if isinstance(payload, hwbkpt.Hit):
            now = time.perf_counter()
            if latency:
                value = payload.value_int
                if value is not None:
                    got.latency_ns.append(clock(mono) - value)
            if not got.hits:
                got.first = now
            got.last = now
            got.hits += 1
            if check is not None:
                value = payload.value_int
                if value is None or not check(got.hits, value):
                    got.wrong_values += 1
            if on_hit is not None:
                result = on_hit(payload)
                if asyncio.iscoroutine(result):
                    await result
        elif isinstance(payload, hwbkpt.HitsDropped):
            got.dropped += payload.count
        elif isinstance(payload, hwbkpt.TargetExited):
            got.exited = True
    return got
