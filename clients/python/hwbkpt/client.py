"""The synchronous client: ``Client``, the connection; sessions are in ``hwbkpt.session``."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self, TypeVar

import grpc

from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._address import default_address, grpc_target
from hwbkpt._common import CALL_TIMEOUT, CHANNEL_OPTIONS, DEFAULT_LEASE
from hwbkpt.errors import HwbkptError, from_rpc_error
from hwbkpt.session import Session
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import broker_pb2_grpc, sim_pb2, sim_pb2_grpc

__all__ = ["Client", "Session"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class Client:
    """A connection to the broker. ``address``: ``unix:PATH``, ``tcp:HOST:PORT`` or ``HOST:PORT``
    (default ``$HWBKPT_SERVER``, else ``unix:/run/hwbkpt/hwbkpt.sock``).

    Closing the client closes the sessions it opened.
    """

    def __init__(self, address: str | None = None, *, timeout: float = CALL_TIMEOUT) -> None:
        self.address = address if address is not None else default_address()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(grpc_target(self.address), options=CHANNEL_OPTIONS)
        self._broker = broker_pb2_grpc.BrokerServiceStub(self._channel)
        self._sim = sim_pb2_grpc.SimServiceStub(self._channel)
        self._sessions: list[Session] = []
        self._closed = False

    # --- plumbing ----------------------------------------------------------------------
    def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def close(self) -> None:
        """Close every session this client opened, then the channel."""
        if self._closed:
            return
        self._closed = True
        for session in list(self._sessions):
            with contextlib.suppress(HwbkptError):
                session.close()
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- public views ------------------------------------------------------------------
    def describe(self) -> m.MachineInfo:
        return cv.machine_from_pb(
            self._call(self._broker.DescribeMachine, pb.DescribeMachineRequest())
        )

    def slot_map(self, pid: int = 0) -> m.SlotMap:
        return cv.slot_map_from_pb(
            self._call(self._broker.GetSlotMap, pb.GetSlotMapRequest(pid=pid))
        )

    # --- sessions ----------------------------------------------------------------------
    def open_session(self, name: str, lease_seconds: int = 0, hit_buffer: int = 0) -> Session:
        """Open a session and start its event stream at once (the lease runs without one)."""
        resp = self._call(
            self._broker.OpenSession,
            pb.OpenSessionRequest(name=name, lease_seconds=lease_seconds, hit_buffer=hit_buffer),
        )
        session = Session(
            self,
            session_id=resp.session_id,
            name=name,
            token=resp.token,
            lease_seconds=resp.lease_seconds or DEFAULT_LEASE,
        )
        self._sessions.append(session)
        return session

    def resume_session(
        self, token: str, *, after_seq: int = 0, lease_seconds: float = 0
    ) -> Session:
        """Take over a session by its token (e.g. after this process restarted).

        Events above ``after_seq`` are replayed; 0 replays every event the broker kept.
        """
        resp = self._call(self._broker.ResumeSession, pb.ResumeSessionRequest(token=token))
        session = Session(
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
    def sim_spawn(self, threads: int = 1) -> m.SpawnedProcess:
        return cv.spawned_from_pb(
            self._call(self._sim.SpawnProcess, sim_pb2.SpawnProcessRequest(threads=threads))
        )

    def sim_spawn_thread(self, pid: int) -> int:
        return self._call(self._sim.SpawnThread, sim_pb2.SpawnThreadRequest(pid=pid)).tid

    def sim_end_thread(self, tid: int) -> None:
        self._call(self._sim.EndThread, sim_pb2.EndThreadRequest(tid=tid))

    def sim_end_process(self, pid: int, exit_code: int = 0) -> None:
        self._call(self._sim.EndProcess, sim_pb2.EndProcessRequest(pid=pid, exit_code=exit_code))

    def sim_touch(
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
        return cv.touch_from_pb(self._call(self._sim.Touch, req))
