"""An asyncio session, mirroring ``hwbkpt.session.Session``.

Each session reads its event stream in a background task into a queue and resumes the
session after a break (``ResumeSession`` + ``StreamEvents(after_seq=last)``) within its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

import grpc
import grpc.aio

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
from hwbkpt.errors import HwbkptError, SessionLostError, from_rpc_error, from_status_bytes
from hwbkpt.v1 import broker_pb2 as pb

if TYPE_CHECKING:
    from hwbkpt.aio import AsyncClient

__all__ = ["AsyncSession"]


class _End:
    """Queue marker: the stream is over for good."""


_END = _End()
_EventCall = grpc.aio.UnaryStreamCall[pb.StreamEventsRequest, pb.StreamEventsResponse]
_ResumeCall = grpc.aio.StreamStreamCall[
    pb.ResumeThreadsStreamRequest, pb.ResumeThreadsStreamResponse
]


class AsyncSession:
    """One broker session (asyncio). ``async for event in session.events(): ...``"""

    def __init__(
        self,
        client: AsyncClient,
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
        self._queue: asyncio.Queue[m.Event | HwbkptError | _End] = asyncio.Queue()
        self._closing = asyncio.Event()
        self._stream: _EventCall | None = None
        self._ended = False
        #: The ResumeThreadsStream call resume_threads reuses (opened at the first resume).
        self._resume_call: _ResumeCall | None = None
        self._resume_lock = asyncio.Lock()
        #: The broker predates ResumeThreadsStream: resume with unary calls.
        self._resume_unary = False
        #: How many times the stream was resumed after a break.
        self.reconnects = 0
        self._task = asyncio.create_task(self._pump(), name=f"hwbkpt-events-{name}")

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

    @property
    def ended(self) -> bool:
        """True once a reader has seen the end of the stream."""
        return self._ended

    # --- requests ----------------------------------------------------------------------
    async def set_breakpoint(
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
        """Register a request; the defaults are those of :meth:`hwbkpt.Session.set_breakpoint`."""
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
        return await self.set_spec(spec)

    async def set_spec(self, spec: m.BreakpointSpec) -> m.Breakpoint:
        req = pb.SetBreakpointRequest(token=self.token, spec=cv.spec_to_pb(spec))
        resp = await self._client._call(self._broker.SetBreakpoint, req)
        return cv.breakpoint_from_pb(resp.breakpoint)

    async def watch(
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
        return await self.set_breakpoint(
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

    async def modify(
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
        resp = await self._client._call(self._broker.ModifyBreakpoint, req)
        return cv.breakpoint_from_pb(resp.breakpoint)

    async def remove(self, breakpoint_id: int) -> None:
        req = pb.RemoveBreakpointRequest(token=self.token, breakpoint_id=breakpoint_id)
        await self._client._call(self._broker.RemoveBreakpoint, req)

    async def list(self) -> list[m.Breakpoint]:
        req = pb.ListBreakpointsRequest(token=self.token)
        resp = await self._client._call(self._broker.ListBreakpoints, req)
        return [cv.breakpoint_from_pb(b) for b in resp.breakpoints]

    async def resume_threads(self, tids: Sequence[int] = ()) -> tuple[int, ...]:
        """Resume threads this session halted; no tids means all of them.

        The requests share one ``ResumeThreadsStream`` call, which answers in about half
        the time of a new call; a broker without it is asked with ``ResumeThreads``.
        """
        if not self._resume_unary:
            async with self._resume_lock:
                resp = await self._resume_on_stream(tids)
            if resp is not None:
                if resp.error_status:
                    raise from_status_bytes(resp.error_status)
                return tuple(resp.resumed_tids)
        req = pb.ResumeThreadsRequest(token=self.token, tids=list(tids))
        return tuple((await self._client._call(self._broker.ResumeThreads, req)).resumed_tids)

    async def _resume_on_stream(self, tids: Sequence[int]) -> pb.ResumeThreadsStreamResponse | None:
        """One request and its answer on the resume stream; None: the broker lacks it."""
        call = self._resume_call
        if call is None or call.done():
            # Nothing was sent on a call that has ended (the connection broke while it was
            # idle): a new one is safe. No request iterator: it is written to, one request
            # per resume.
            call = self._resume_call = self._broker.ResumeThreadsStream(None)
        try:
            async with asyncio.timeout(self._client.timeout):
                await call.write(pb.ResumeThreadsStreamRequest(token=self.token, tids=list(tids)))
                resp = await call.read()
        except grpc.RpcError as rpc_err:
            self._drop_resume_call()
            err = from_rpc_error(rpc_err)
            if err.code == "UNIMPLEMENTED":
                # Refused before reading anything: nothing was resumed, ask the old way.
                self._resume_unary = True
                return None
            raise err from None
        except asyncio.InvalidStateError:
            # The call ended between the check above and the write.
            self._drop_resume_call()
            raise HwbkptError("UNAVAILABLE", "the resume stream ended") from None
        except TimeoutError:
            self._drop_resume_call()
            raise HwbkptError("DEADLINE_EXCEEDED", "ResumeThreadsStream did not answer") from None
        except BaseException:
            # Cancelled between the request and its answer: a later reader would get
            # this answer, so the call cannot be used again.
            self._drop_resume_call()
            raise
        if not isinstance(resp, pb.ResumeThreadsStreamResponse):  # grpc.aio.EOF
            self._drop_resume_call()
            raise HwbkptError("UNAVAILABLE", "the broker ended the resume stream")
        return resp

    def _drop_resume_call(self) -> None:
        call, self._resume_call = self._resume_call, None
        if call is not None:
            call.cancel()

    # --- processes (native machine) ----------------------------------------------------
    async def attach_process(self, pid: int, *, follow_fork: bool = False) -> tuple[int, ...]:
        """Trace a running process for this session (as ``gdb -p``); returns its thread ids.

        The broker lets it go (slots cleared, threads running) once no session needs it:
        after this session ends, unless another session still watches it. A watch on a
        process attaches it by itself; this only keeps it attached without one.
        """
        req = pb.AttachProcessRequest(token=self.token, pid=pid, follow_fork=follow_fork)
        return tuple((await self._client._call(self._broker.AttachProcess, req)).tids)

    async def launch_process(
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
        return (await self._client._call(self._broker.LaunchProcess, req)).pid

    async def release_process(self, pid: int) -> None:
        """Let a program this session launched run."""
        req = pb.ReleaseProcessRequest(token=self.token, pid=pid)
        await self._client._call(self._broker.ReleaseProcess, req)

    async def detach_process(self, pid: int) -> bool:
        """End this session's hold on ``pid`` (gdb's ``detach``): its requests there are
        removed, a launch it holds runs. True when the broker let the process go."""
        req = pb.DetachProcessRequest(token=self.token, pid=pid)
        return (await self._client._call(self._broker.DetachProcess, req)).released

    # --- events ------------------------------------------------------------------------
    # ``timeout`` mirrors the blocking Session's signature, hence the noqa.
    async def next_event(self, timeout: float | None = None) -> m.Event | None:  # noqa: ASYNC109
        """The next event; ``None`` after ``timeout`` seconds or once the session is over."""
        queue = self._queue
        if not queue.empty():
            # A burst: no waiting (asyncio.wait_for would cost a task per event).
            item = queue.get_nowait()
        else:
            try:
                async with asyncio.timeout(timeout):
                    item = await queue.get()
            except TimeoutError:
                return None
        if isinstance(item, m.Event):
            return item
        self._queue.put_nowait(item)  # keep the end (or the error) for every later reader
        self._ended = True
        if isinstance(item, HwbkptError):
            raise item
        return None

    async def events(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[m.Event]:
        """Events as they arrive, until the session is closed (or ``timeout`` s pass idle)."""
        while (event := await self.next_event(timeout)) is not None:
            yield event

    # --- lifetime ----------------------------------------------------------------------
    async def close(self) -> None:
        """Close the session on the broker (its requests go) and stop the stream."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            await self._client._call(
                self._broker.CloseSession, pb.CloseSessionRequest(token=self.token)
            )
        except HwbkptError as err:
            if err.code != "NOT_FOUND":  # already gone (lease ended): nothing to close
                raise
        finally:
            await self._stop_stream()

    async def detach(self) -> None:
        """Stop reading events without closing: the session lives on for its lease."""
        self._closing.set()
        await self._stop_stream()

    async def _stop_stream(self) -> None:
        self._drop_resume_call()
        if self._stream is not None:
            self._stream.cancel()
        if asyncio.current_task() is not self._task:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
        if self in self._client._sessions:
            self._client._sessions.remove(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the background stream ---------------------------------------------------------
    async def _pump(self) -> None:
        try:
            await self._run_stream()
        finally:
            self._queue.put_nowait(_END)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _run_stream(self) -> None:
        delays: Iterator[float] | None = None
        deadline = 0.0
        resuming = False
        while not self._closing.is_set():
            if resuming:
                try:
                    await self._broker.ResumeSession(
                        pb.ResumeSessionRequest(token=self.token),
                        timeout=min(self._client.timeout, RESUME_TIMEOUT),
                    )
                except grpc.RpcError as rpc_err:
                    err = from_rpc_error(rpc_err)
                    if err.code in FATAL_CODES or time.monotonic() > deadline:
                        self._lose(err)
                        return
                    assert delays is not None
                    await self._pause(next(delays))
                    continue
                self.reconnects += 1
                resuming = False
            started = time.monotonic()
            failure = await self._read_stream()
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
            await self._pause(next(delays))

    async def _read_stream(self) -> HwbkptError | None:
        """Read one stream to its end; the error that ended it, or None for a clean end."""
        req = pb.StreamEventsRequest(token=self.token, after_seq=self._cursor.last_seq)
        stream = self._broker.StreamEvents(req)
        self._stream = stream
        try:
            async for resp in stream:
                for msg in resp.events:
                    event = self._cursor.accept(msg)
                    if event is not None:
                        self._queue.put_nowait(event)
        except grpc.RpcError as err:
            return from_rpc_error(err)
        except asyncio.CancelledError:
            # grpc.aio raises CancelledError when *we* cancel the call in close(); only a
            # cancellation of this task itself must propagate.
            task = asyncio.current_task()
            if self._closing.is_set() and task is not None and not task.cancelling():
                return None
            raise
        finally:
            self._stream = None
        return None

    def _lose(self, err: HwbkptError) -> None:
        self._queue.put_nowait(
            SessionLostError(
                err.code,
                f"session {self.name!r} could not be resumed: {err.message}",
                err.field_violations,
            )
        )
