"""The asyncio client: ``AsyncClient``, mirroring ``Client``; sessions are in
``hwbkpt.aio_session``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from types import TracebackType
from typing import Self

from hwbkpt import _calls as calls
from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._aio_transport import AsyncTransport
from hwbkpt._credentials import Credentials
from hwbkpt._transport import CALL_TIMEOUT
from hwbkpt.aio_session import AsyncSession
from hwbkpt.errors import HwbkptError
from hwbkpt.v1 import broker_pb2 as pb

__all__ = ["AsyncClient", "AsyncSession"]


class AsyncClient:
    """An asyncio connection to the broker; the same methods as :class:`hwbkpt.Client`,
    as coroutines. Create it inside a running event loop (``async with AsyncClient(...)``).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = CALL_TIMEOUT,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        token_file: str | None = None,
    ) -> None:
        """``ca``, ``cert``, ``key``, ``token_file``: as for :class:`hwbkpt.Client`."""
        credentials = Credentials(ca=ca, cert=cert, key=key, token_file=token_file)
        self._transport = AsyncTransport(address, timeout, credentials)
        self._sessions: list[AsyncSession] = []
        self._closed = False

    @property
    def address(self) -> str:
        return self._transport.address

    @property
    def timeout(self) -> float:
        """Seconds each call may take (its sessions' too); may be changed at any time."""
        return self._transport.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._transport.timeout = seconds

    async def close(self) -> None:
        """Close every session this client opened, then the channel."""
        if self._closed:
            return
        self._closed = True
        for session in list(self._sessions):
            with contextlib.suppress(HwbkptError):
                await session.close()
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- public views ------------------------------------------------------------------
    async def describe(self) -> m.MachineInfo:
        return await self._transport.call(calls.describe())

    async def slot_map(self, pid: int = 0, pool: str = "") -> m.SlotMap:
        """Who holds which slot (``pid``: one process; ``pool``: one pool's slots), every
        page of the broker's answer followed."""
        pages: list[pb.GetSlotMapResponse] = []
        token = ""
        while len(pages) < calls.MAX_SLOT_MAP_PAGES:
            page = await self._transport.call(calls.slot_map_page(pid, pool, token))
            pages.append(page)
            token = page.next_page_token
            if not token:
                break
        return cv.slot_map_from_pages(pages)

    async def watch_slot_map(
        self, pid: int = 0, min_interval: float | timedelta = 0.1
    ) -> AsyncIterator[m.SlotMapUpdate]:
        """The slot map now, then again after each change, with what happened in between
        (at most one update per ``min_interval`` seconds; nothing while nothing changes).
        Ends when the broker stops; close the iterator (or the client) to stop watching."""
        request = calls.watch_slot_map(pid, min_interval)
        async for update in self._transport.watch_slot_map(request):
            yield update

    async def health(self, service: str = "", timeout: float = 3.0) -> str:  # noqa: ASYNC109
        """The broker's gRPC health status ("SERVING", "NOT_SERVING", ...) for ``service``
        ("": the whole server), as container and Kubernetes probes ask it."""
        return await self._transport.health(service, timeout)

    # --- sessions ----------------------------------------------------------------------
    async def open_session(
        self, name: str, lease_seconds: float | timedelta = 0, hit_buffer: int = 0
    ) -> AsyncSession:
        """Open a session and start its event stream at once (the lease runs without one)."""
        ticket = await self._transport.call(calls.open_session(name, lease_seconds, hit_buffer))
        return self._adopt(AsyncSession(self._transport, ticket, on_close=self._forget))

    async def resume_session(
        self, token: str, *, after_seq: int = 0, lease_seconds: float | timedelta = 0
    ) -> AsyncSession:
        """Take over a session by its token; events above ``after_seq`` are replayed."""
        ticket = await self._transport.call(calls.resume_session(token, lease_seconds))
        session = AsyncSession(self._transport, ticket, after_seq=after_seq, on_close=self._forget)
        return self._adopt(session)

    def _adopt(self, session: AsyncSession) -> AsyncSession:
        self._sessions.append(session)
        return session

    def _forget(self, session: AsyncSession) -> None:
        if session in self._sessions:
            self._sessions.remove(session)

    # --- simulated machine -------------------------------------------------------------
    async def sim_spawn(self, threads: int = 1) -> m.SpawnedProcess:
        return await self._transport.call(calls.sim_spawn(threads))

    async def sim_spawn_thread(self, pid: int) -> int:
        return await self._transport.call(calls.sim_spawn_thread(pid))

    async def sim_end_thread(self, tid: int) -> None:
        await self._transport.call(calls.sim_end_thread(tid))

    async def sim_end_process(self, pid: int, exit_code: int = 0) -> None:
        await self._transport.call(calls.sim_end_process(pid, exit_code))

    async def sim_touch(
        self,
        pid: int,
        address: int,
        access: m.Access | str = "write",
        value: int | bytes | None = None,
        tid: int = 0,
        size: int = 0,
        ip: int = 0,
    ) -> m.TouchResult:
        """One access by a simulated thread. An int value takes ``size`` bytes (8 if 0)."""
        call = calls.sim_touch(pid, address, access, value, tid, size, ip)
        return await self._transport.call(call)
