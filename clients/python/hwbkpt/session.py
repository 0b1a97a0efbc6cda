"""A blocking session: its requests and its event stream.

Each session reads its event stream on a background thread into a queue, so events are
never lost while the caller is busy, and the thread resumes the session after a break
(``ResumeSession`` + ``StreamEvents(after_seq=last)``) within its lease.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

import grpc

from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._common import (
    FATAL_CODES,
    HEALTHY_STREAM,
    RESUME_TIMEOUT,
    EventCursor,
    ReconnectPolicy,
    launch_request,
)
from hwbkpt.errors import HwbkptError, SessionLostError, from_rpc_error
from hwbkpt.v1 import broker_pb2 as pb

if TYPE_CHECKING:
    from hwbkpt.client import Client

__all__ = ["Session"]


class _End:
    """Queue marker: the stream is over for good."""


_END = _End()


class Session:
    """One broker session: its requests and its numbered event stream.

    Use :meth:`events` (a generator) or :meth:`next_event` to read events; both raise
    :class:`~hwbkpt.errors.SessionLostError` when the stream broke and the session could not
    be resumed within its lease.
    """

    def __init__(
        self,
        client: Client,
        *,
        session_id: str,
        name: str,
        token: str,
        lease_seconds: float,
        after_seq: int = 0,
        policy: ReconnectPolicy | None = None,
    ) -> None:
        self.id = session_id
        self.name = name
        self.token = token
        self.lease_seconds = lease_seconds
        self._client = client
        self._broker = client._broker
        self._policy = policy or ReconnectPolicy()
        self._cursor = EventCursor(after_seq)
        self._queue: queue.Queue[m.Event | HwbkptError | _End] = queue.Queue()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._stream: grpc.CallIterator[pb.StreamEventsResponse] | None = None
        self._ended = False
        #: How many times the stream was resumed after a break.
        self.reconnects = 0
        self._thread = threading.Thread(
            target=self._pump, name=f"hwbkpt-events-{name}", daemon=True
        )
        self._thread.start()

    # --- state -------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The number of the last event received from the broker."""
        return self._cursor.last_seq

    @property
    def missed_events(self) -> int:
        """Events the broker no longer held when the stream resumed (0 when none were lost)."""
        return self._cursor.missed

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    # --- requests ----------------------------------------------------------------------
    def set_breakpoint(
        self,
        *,
        scope: m.Scope | str | None = None,
        pid: int = 0,
        tid: int = 0,
        address: int = 0,
        length: int | None = None,
        access: m.Access | str = m.Access.WRITE,
        priority: int | str | None = None,
        action: m.Action | str = m.Action.NOTIFY,
        changed_only: bool = False,
        equals: int | bytes | None = None,
        ignore_first: int = 0,
        stop_after: int = 0,
        symbol: str = "",
        nonstop: bool = False,
        call_chain: bool = False,
    ) -> m.Breakpoint:
        """Register a request. Scope defaults to thread if ``tid`` else process; length to 8
        (exec: 0, the arch's instruction length); priority to the broker's normal (25)."""
        spec = cv.make_spec(
            scope=scope,
            pid=pid,
            tid=tid,
            address=address,
            length=length,
            access=access,
            priority=priority,
            action=action,
            changed_only=changed_only,
            equals=equals,
            ignore_first=ignore_first,
            stop_after=stop_after,
            symbol=symbol,
            nonstop=nonstop,
            call_chain=call_chain,
        )
        return self.set_spec(spec)

    def set_spec(self, spec: m.BreakpointSpec) -> m.Breakpoint:
        req = pb.SetBreakpointRequest(token=self.token, spec=cv.spec_to_pb(spec))
        return cv.breakpoint_from_pb(self._client._call(self._broker.SetBreakpoint, req).breakpoint)

    def watch(
        self,
        address: int | str,
        *,
        pid: int = 0,
        tid: int = 0,
        kernel: bool = False,
        length: int | None = None,
        access: m.Access | str = m.Access.WRITE,
        priority: int | str | None = None,
        halt: bool = False,
        changed_only: bool = False,
        nonstop: bool = False,
        call_chain: bool = False,
        stop_after: int = 0,
    ) -> m.Breakpoint:
        """Watch ``address`` (an int, or a symbol name) in a process, a thread or the kernel;
        ``stop_after`` N: the broker reports N hits, then removes the request itself."""
        return self.set_breakpoint(
            scope=m.Scope.KERNEL if kernel else None,
            pid=pid,
            tid=tid,
            address=address if isinstance(address, int) else 0,
            symbol=address if isinstance(address, str) else "",
            length=length,
            access=access,
            priority=priority,
            action=m.Action.HALT if halt else m.Action.NOTIFY,
            changed_only=changed_only,
            nonstop=nonstop,
            call_chain=call_chain,
            stop_after=stop_after,
        )

    def modify(
        self,
        breakpoint_id: int,
        *,
        priority: int | str | None = None,
        action: m.Action | str | None = None,
        filter: m.Filter | None = None,
    ) -> m.Breakpoint:
        """Change priority, action or filter; what is ``None`` stays as it is."""
        req = pb.ModifyBreakpointRequest(token=self.token, breakpoint_id=breakpoint_id)
        prio = cv.parse_priority(priority)
        if prio is not None:
            req.priority = prio
        if action is not None:
            req.action = cv.action_to_pb(cv.parse_action(action))
        if filter is not None:
            req.filter.CopyFrom(cv.filter_to_pb(filter))
        return cv.breakpoint_from_pb(
            self._client._call(self._broker.ModifyBreakpoint, req).breakpoint
        )

    def remove(self, breakpoint_id: int) -> None:
        req = pb.RemoveBreakpointRequest(token=self.token, breakpoint_id=breakpoint_id)
        self._client._call(self._broker.RemoveBreakpoint, req)

    def list(self) -> list[m.Breakpoint]:
        resp = self._client._call(
            self._broker.ListBreakpoints, pb.ListBreakpointsRequest(token=self.token)
        )
        return [cv.breakpoint_from_pb(b) for b in resp.breakpoints]

    def resume_threads(self, tids: Sequence[int] = ()) -> tuple[int, ...]:
        """Resume threads this session halted; no tids means all of them."""
        req = pb.ResumeThreadsRequest(token=self.token, tids=list(tids))
        return tuple(self._client._call(self._broker.ResumeThreads, req).resumed_tids)

    # --- processes (native machine) ----------------------------------------------------
    def attach_process(self, pid: int, *, follow_fork: bool = False) -> tuple[int, ...]:
        """Trace a running process for this session (as ``gdb -p``); returns its thread ids.

        The broker lets it go (slots cleared, threads running) once no session needs it:
        after this session ends, unless another session still watches it. A watch on a
        process attaches it by itself; this only keeps it attached without one.
        """
        req = pb.AttachProcessRequest(token=self.token, pid=pid, follow_fork=follow_fork)
        return tuple(self._client._call(self._broker.AttachProcess, req).tids)

    def launch_process(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        follow_fork: bool = False,
    ) -> int:
        """Start a program under the broker, held before its first instruction; its pid.

        Set the watches, then :meth:`release_process` it. ``env`` and ``cwd`` default to
        this process's. The program inherits the broker's standard streams. If the session
        ends first, the broker releases it.
        """
        req = launch_request(self.token, argv, env, cwd, follow_fork)
        return self._client._call(self._broker.LaunchProcess, req).pid

    def release_process(self, pid: int) -> None:
        """Let a program this session launched run."""
        req = pb.ReleaseProcessRequest(token=self.token, pid=pid)
        self._client._call(self._broker.ReleaseProcess, req)

    def detach_process(self, pid: int) -> bool:
        """End this session's hold on ``pid`` (gdb's ``detach``): its requests there are
        removed, a launch it holds runs. True when the broker let the process go."""
        req = pb.DetachProcessRequest(token=self.token, pid=pid)
        return self._client._call(self._broker.DetachProcess, req).released

    # --- events ------------------------------------------------------------------------
    def next_event(self, timeout: float | None = None) -> m.Event | None:
        """The next event; ``None`` after ``timeout`` seconds or once the session is over."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, m.Event):
            return item
        self._queue.put(item)  # keep the end (or the error) for every later reader
        self._ended = True
        if isinstance(item, HwbkptError):
            raise item
        return None

    def events(self, timeout: float | None = None) -> Iterator[m.Event]:
        """Events as they arrive, until the session is closed (or ``timeout`` s pass idle)."""
        while (event := self.next_event(timeout)) is not None:
            yield event

    @property
    def ended(self) -> bool:
        """True once a reader has seen the end of the stream."""
        return self._ended

    # --- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the session on the broker (its requests go) and stop the stream."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            self._client._call(self._broker.CloseSession, pb.CloseSessionRequest(token=self.token))
        except HwbkptError as err:
            if err.code != "NOT_FOUND":  # already gone (lease ended): nothing to close
                raise
        finally:
            self._stop_stream()

    def detach(self) -> None:
        """Stop reading events without closing: the session lives on for its lease."""
        self._closing.set()
        self._stop_stream()

    def _stop_stream(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if self in self._client._sessions:
            self._client._sessions.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the background stream ---------------------------------------------------------
    def _pump(self) -> None:
        try:
            self._run_stream()
        finally:
            self._queue.put(_END)

    def _run_stream(self) -> None:
        delays: Iterator[float] | None = None
        deadline = 0.0
        resuming = False
        while not self._closing.is_set():
            if resuming:
                try:
                    self._broker.ResumeSession(
                        pb.ResumeSessionRequest(token=self.token),
                        timeout=min(self._client.timeout, RESUME_TIMEOUT),
                    )
                except grpc.RpcError as rpc_err:
                    err = from_rpc_error(rpc_err)
                    if err.code in FATAL_CODES or time.monotonic() > deadline:
                        self._lose(err)
                        return
                    assert delays is not None
                    self._closing.wait(next(delays))
                    continue
                self.reconnects += 1
                resuming = False
            started = time.monotonic()
            failure = self._read_stream()
            if self._closing.is_set():
                return
            if failure is not None and failure.code in FATAL_CODES:
                self._lose(failure)
                return
            # A stream that stayed up for a while was healthy: a new break gets a new lease.
            if delays is None or time.monotonic() - started >= HEALTHY_STREAM:
                delays = self._policy.delays()
                deadline = time.monotonic() + self.lease_seconds + self._policy.grace
            elif time.monotonic() > deadline:
                self._lose(failure or HwbkptError("UNAVAILABLE", "the event stream keeps ending"))
                return
            resuming = True
            self._closing.wait(next(delays))

    def _read_stream(self) -> HwbkptError | None:
        """Read one stream to its end; the error that ended it, or None for a clean end."""
        req = pb.StreamEventsRequest(token=self.token, after_seq=self._cursor.last_seq)
        with self._lock:
            if self._closing.is_set():
                return None
            stream = self._broker.StreamEvents(req)
            self._stream = stream
        try:
            for resp in stream:
                for msg in resp.events:
                    event = self._cursor.accept(msg)
                    if event is not None:
                        self._queue.put(event)
        except grpc.RpcError as err:
            return from_rpc_error(err)
        finally:
            with self._lock:
                self._stream = None
        return None

    def _lose(self, err: HwbkptError) -> None:
        self._queue.put(
            SessionLostError(
                err.code,
                f"session {self.name!r} could not be resumed: {err.message}",
                err.field_violations,
            )
        )
