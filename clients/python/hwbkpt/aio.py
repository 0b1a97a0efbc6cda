"""The asyncio client: ``AsyncClient``, mirroring ``Client``; sessions are in
``hwbkpt.aio_session``."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self, TypeVar

import grpc
import grpc.aio

from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._address import default_address, grpc_target
from hwbkpt._common import CALL_TIMEOUT, CHANNEL_OPTIONS, DEFAULT_LEASE
from hwbkpt.aio_session import AsyncSession
from hwbkpt.errors import HwbkptError, from_rpc_error
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import broker_pb2_grpc, sim_pb2, sim_pb2_grpc

__all__ = ["AsyncClient", "AsyncSession"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AsyncClient:
    """An asyncio connection to the broker; the same methods as :class:`hwbkpt.Client`,
    as coroutines. Create it inside a running event loop (``async with AsyncClient(...)``).
    """

    def __init__(self, address: str | None = None, *, timeout: float = CALL_TIMEOUT) -> None:
        self.address = address if address is not None else default_address()
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            grpc_target(self.address), options=CHANNEL_OPTIONS
        )
        self._broker = broker_pb2_grpc.BrokerServiceStub(self._channel)
        self._sim = sim_pb2_grpc.SimServiceStub(self._channel)
        self._sessions: list[AsyncSession] = []
        self._closed = False

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req
    ) -> _Resp:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    async def close(self) -> None:
        """Close every session this client opened, then the channel."""
        if self._closed:
            return
        self._closed = True
        for session in list(self._sessions):
            with contextlib.suppress(HwbkptError):
                await session.close()
        await self._channel.close(None)

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
        resp = await self._call(self._broker.DescribeMachine, pb.DescribeMachineRequest())
        return cv.machine_from_pb(resp)

    async def slot_map(self, pid: int = 0) -> m.SlotMap:
        resp = await self._call(self._broker.GetSlotMap, pb.GetSlotMapRequest(pid=pid))
        return cv.slot_map_from_pb(resp)

    # --- sessions ----------------------------------------------------------------------
    async def open_session(
        self, name: str, lease_seconds: int = 0, hit_buffer: int = 0
    ) -> AsyncSession:
        """Open a session and start its event stream at once (the lease runs without one)."""
        resp = await self._call(
            self._broker.OpenSession,
            pb.OpenSessionRequest(name=name, lease_seconds=lease_seconds, hit_buffer=hit_buffer),
        )
        session = AsyncSession(
            self,
            session_id=resp.session_id,
            name=name,
            token=resp.token,
            lease_seconds=resp.lease_seconds or DEFAULT_LEASE,
        )
        self._sessions.append(session)
        return session

    async def resume_session(
        self, token: str, *, after_seq: int = 0, lease_seconds: float = 0
    ) -> AsyncSession:
        """Take over a session by its token; events above ``after_seq`` are replayed."""
        resp = await self._call(self._broker.ResumeSession, pb.ResumeSessionRequest(token=token))
        session = AsyncSession(
            self,
            session_id=resp.session_id,
            name=resp.name,
            token=token,
            lease_seconds=lease_seconds or DEFAULT_LEASE,
            after_seq=after_seq,
        )
        self._sessions.append(session)
        return session

    # --- simulated machine -------------------------------------------------------------
    async def sim_spawn(self, threads: int = 1) -> m.SpawnedProcess:
        req = sim_pb2.SpawnProcessRequest(threads=threads)
        return cv.spawned_from_pb(await self._call(self._sim.SpawnProcess, req))

    async def sim_spawn_thread(self, pid: int) -> int:
        req = sim_pb2.SpawnThreadRequest(pid=pid)
        return (await self._call(self._sim.SpawnThread, req)).tid

    async def sim_end_thread(self, tid: int) -> None:
        await self._call(self._sim.EndThread, sim_pb2.EndThreadRequest(tid=tid))

    async def sim_end_process(self, pid: int, exit_code: int = 0) -> None:
        req = sim_pb2.EndProcessRequest(pid=pid, exit_code=exit_code)
        await self._call(self._sim.EndProcess, req)

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
        req = sim_pb2.TouchRequest(
            pid=pid,
            tid=tid,
            address=address,
            access=cv.access_to_pb(cv.parse_access(access)),
            value=b"" if value is None else cv.value_bytes(value, size),
            size=size,
            ip=ip,
        )
        return cv.touch_from_pb(await self._call(self._sim.Touch, req))
