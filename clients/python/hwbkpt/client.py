"""The synchronous client: ``Client``, the connection; sessions are in ``hwbkpt.session``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from types import TracebackType
from typing import Self

from hwbkpt import _calls as calls
from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._credentials import Credentials
from hwbkpt._transport import CALL_TIMEOUT, Transport
from hwbkpt.errors import HwbkptError
from hwbkpt.session import Session
from hwbkpt.v1 import broker_pb2 as pb

__all__ = ["Client", "Session"]


class Client:
    """A connection to the broker. ``address``: ``unix:PATH``, ``tcp:HOST:PORT`` or ``HOST:PORT``
    (default ``$HWBKPT_SERVER``, else ``unix:/run/hwbkpt/hwbkpt.sock``).

    On a network: ``ca`` (the broker's CA certificate, PEM) turns TLS on, ``cert`` and
    ``key`` present a client certificate, ``token_file`` holds a bearer token.

    Closing the client closes the sessions it opened.
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
        credentials = Credentials(ca=ca, cert=cert, key=key, token_file=token_file)
        self._transport = Transport(address, timeout, credentials)
        self._sessions: list[Session] = []
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

    def close(self) -> None:
        """Close every session this client opened, then the channel."""
        if self._closed:
            return
        self._closed = True
        for session in list(self._sessions):
            with contextlib.suppress(HwbkptError):
                session.close()
        self._transport.close()

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
        return self._transport.call(calls.describe())

    def slot_map(self, pid: int = 0, pool: str = "") -> m.SlotMap:
        """Who holds which slot (``pid``: one process; ``pool``: one pool's slots), every
        page of the broker's answer followed."""
        pages: list[pb.GetSlotMapResponse] = []
        token = ""
        while len(pages) < calls.MAX_SLOT_MAP_PAGES:
            page = self._transport.call(calls.slot_map_page(pid, pool, token))
            pages.append(page)
            token = page.next_page_token
            if not token:
                break
        return cv.slot_map_from_pages(pages)

    def watch_slot_map(
        self, pid: int = 0, min_interval: float | timedelta = 0.1
    ) -> Iterator[m.SlotMapUpdate]:
        """The slot map now, then again after each change, with what happened in between
        (at most one update per ``min_interval`` seconds; nothing while nothing changes).
        Ends when the broker stops; close the iterator (or the client) to stop watching."""
        yield from self._transport.watch_slot_map(calls.watch_slot_map(pid, min_interval))

    def health(self, service: str = "", timeout: float = 3.0) -> str:
        """The broker's gRPC health status ("SERVING", "NOT_SERVING", ...) for ``service``
        ("": the whole server), as container and Kubernetes probes ask it."""
        return self._transport.health(service, timeout)

    # --- sessions ----------------------------------------------------------------------
    def open_session(
        self, name: str, lease_seconds: float | timedelta = 0, hit_buffer: int = 0
    ) -> Session:
        """Open a session and start its event stream at once (the lease runs without one)."""
        ticket = self._transport.call(calls.open_session(name, lease_seconds, hit_buffer))
        return self._adopt(Session(self._transport, ticket, on_close=self._forget))

    def resume_session(
        self, token: str, *, after_seq: int = 0, lease_seconds: float | timedelta = 0
    ) -> Session:
        """Take over a session by its token (e.g. after this process restarted).

        Events above ``after_seq`` are replayed; 0 replays every event the broker kept.
        """
        ticket = self._transport.call(calls.resume_session(token, lease_seconds))
        session = Session(self._transport, ticket, after_seq=after_seq, on_close=self._forget)
        return self._adopt(session)

    def _adopt(self, session: Session) -> Session:
        self._sessions.append(session)
        return session

    def _forget(self, session: Session) -> None:
        if session in self._sessions:
            self._sessions.remove(session)

    # --- simulated machine -------------------------------------------------------------
    def sim_spawn(self, threads: int = 1) -> m.SpawnedProcess:
        return self._transport.call(calls.sim_spawn(threads))

    def sim_spawn_thread(self, pid: int) -> int:
        return self._transport.call(calls.sim_spawn_thread(pid))

    def sim_end_thread(self, tid: int) -> None:
        self._transport.call(calls.sim_end_thread(tid))

    def sim_end_process(self, pid: int, exit_code: int = 0) -> None:
        self._transport.call(calls.sim_end_process(pid, exit_code))

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
        return self._transport.call(calls.sim_touch(pid, address, access, value, tid, size, ip))
