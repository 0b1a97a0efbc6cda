"""An asyncio session, mirroring ``hwbkpt.session.Session``.

Each session reads its event stream in a background task into a queue and resumes the
session after a break (``ResumeSession`` + ``StreamEvents(after_seq=last)``) within its
lease; the decisions of that loop are ``hwbkpt._stream_resume``'s, shared with ``Session``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Self, Unpack

from hwbkpt import _calls as calls
from hwbkpt import models as m
from hwbkpt._aio_transport import AsyncEventStream, AsyncTransport
from hwbkpt._args import SpecArgs, WatchArgs, make_spec, watch_spec
from hwbkpt._stream_resume import (
    Lose,
    ReadStream,
    ReconnectPolicy,
    Resume,
    Step,
    StreamResume,
    Wait,
)
from hwbkpt.errors import HwbkptError

__all__ = ["AsyncSession"]


class _End:
    """Queue marker: the stream is over for good."""


_END = _End()


class AsyncSession:
    """One broker session (asyncio). ``async for event in session.events(): ...``

    Sessions come from :meth:`AsyncClient.open_session` and :meth:`AsyncClient.resume_session`.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        ticket: calls.SessionTicket,
        *,
        after_seq: int = 0,
        policy: ReconnectPolicy | None = None,
        on_close: Callable[[AsyncSession], None] | None = None,
    ) -> None:
        self.id = ticket.session_id
        self.name = ticket.name
        self.token = ticket.token
        self.lease_seconds = ticket.lease_seconds
        self._transport = transport
        self._on_close = on_close
        self._stream_resume = StreamResume(
            ticket.name, ticket.lease_seconds, after_seq=after_seq, policy=policy
        )
        self._thread_resumer = transport.thread_resumer()
        self._queue: asyncio.Queue[m.Event | HwbkptError | _End] = asyncio.Queue()
        self._closing = asyncio.Event()
        self._stream: AsyncEventStream | None = None
        self._ended = False
        self._task = asyncio.create_task(self._pump(), name=f"hwbkpt-events-{ticket.name}")

    # --- state -------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The number of the last event received from the broker."""
        return self._stream_resume.cursor.last_seq

    @property
    def missed_events(self) -> int:
        """Events the broker no longer held when the stream resumed (0 when none were lost)."""
        return self._stream_resume.cursor.missed

    @property
    def reconnects(self) -> int:
        """How many times the stream was resumed after a break."""
        return self._stream_resume.reconnects

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    @property
    def ended(self) -> bool:
        """True once a reader has seen the end of the stream."""
        return self._ended

    # --- requests ----------------------------------------------------------------------
    async def set_breakpoint(self, **args: Unpack[SpecArgs]) -> m.Breakpoint:
        """Register a request; keywords and defaults are :meth:`hwbkpt.Session.set_breakpoint`'s."""
        return await self.set_spec(make_spec(**args))

    async def set_spec(self, spec: m.BreakpointSpec) -> m.Breakpoint:
        return await self._transport.call(calls.set_breakpoint(self.token, spec))

    async def watch(self, address: int | str, **args: Unpack[WatchArgs]) -> m.Breakpoint:
        """Watch ``address`` (an int, or a symbol name); keywords and defaults are
        :meth:`hwbkpt.Session.watch`'s."""
        return await self.set_spec(watch_spec(address, **args))

    async def modify(
        self,
        breakpoint_id: int,
        *,
        priority: int | str | None = None,
        action: m.Action | str | None = None,
        filter: m.Filter | None = None,
    ) -> m.Breakpoint:
        """Change priority, action or filter; what is ``None`` stays as it is."""
        call = calls.modify(self.token, breakpoint_id, priority, action, filter)
        return await self._transport.call(call)

    async def remove(self, breakpoint_id: int) -> None:
        await self._transport.call(calls.remove(self.token, breakpoint_id))

    async def list(self) -> list[m.Breakpoint]:
        found: list[m.Breakpoint] = []
        page = ""
        for _ in range(calls.MAX_SLOT_MAP_PAGES):  # every page of the answer, in order
            part, page = await self._transport.call(calls.list_breakpoints(self.token, page))
            found += part
            if not page:
                break
        return found

    async def resume_threads(self, tids: Sequence[int] = ()) -> tuple[int, ...]:
        """Resume threads this session halted; no tids means all of them.

        The requests share one ``ResumeThreadsStream`` call, which answers in about half
        the time of a new call; a broker without it is asked with ``ResumeThreads``.
        """
        return await self._thread_resumer.resume(self.token, tids)

    # --- processes (native machine) ----------------------------------------------------
    async def attach_process(self, pid: int, *, follow_fork: bool = False) -> tuple[int, ...]:
        """Trace a running process for this session (as ``gdb -p``); returns its thread ids.

        The broker lets it go (slots cleared, threads running) once no session needs it:
        after this session ends, unless another session still watches it. A watch on a
        process attaches it by itself; this only keeps it attached without one.
        """
        return await self._transport.call(calls.attach_process(self.token, pid, follow_fork))

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
        call = calls.launch_process(self.token, argv, env, cwd, follow_fork)
        return await self._transport.call(call)

    async def release_process(self, pid: int) -> None:
        """Let a program this session launched run."""
        await self._transport.call(calls.release_process(self.token, pid))

    async def resolve_location(
        self, pid: int, location: str, access: m.Access = m.Access.WRITE
    ) -> m.Resolution:
        """What ``location`` ("counter", "cfg.limit") names in ``pid`` now; places nothing."""
        return await self._transport.call(calls.resolve_location(self.token, pid, location, access))

    async def detach_process(self, pid: int) -> bool:
        """End this session's hold on ``pid`` (gdb's ``detach``): its requests there are
        removed, a launch it holds runs. True when the broker let the process go."""
        return await self._transport.call(calls.detach_process(self.token, pid))

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
            await self._transport.call(calls.close_session(self.token))
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
        self._thread_resumer.close()
        if self._stream is not None:
            self._stream.cancel()
        if asyncio.current_task() is not self._task:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
        if self._on_close is not None:
            self._on_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the background stream: carries out StreamResume's steps ------------------------
    async def _pump(self) -> None:
        try:
            await self._run_stream()
        finally:
            self._queue.put_nowait(_END)

    async def _run_stream(self) -> None:
        step: Step = self._stream_resume.start()
        while not self._closing.is_set():
            if isinstance(step, ReadStream):
                failure = await self._read_stream(step.after_seq)
                if self._closing.is_set():
                    return
                step = self._stream_resume.stream_ended(failure)
            elif isinstance(step, Resume):
                step = self._stream_resume.resume_answered(await self._resume_session(step))
            elif isinstance(step, Wait):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), step.seconds)
                step = self._stream_resume.waited()
            if isinstance(step, Lose):
                self._queue.put_nowait(step.error)
                return

    async def _resume_session(self, step: Resume) -> HwbkptError | None:
        timeout = min(self._transport.timeout, step.timeout)
        try:
            await self._transport.call(calls.resume_session(self.token), timeout=timeout)
        except HwbkptError as err:
            return err
        return None

    async def _read_stream(self, after_seq: int) -> HwbkptError | None:
        """Read one stream to its end; the error that ended it, or None for a clean end."""
        stream = self._transport.stream_events(calls.stream_events(after_seq), self.token)
        self._stream = stream
        accept, put = self._stream_resume.cursor.accept, self._queue.put_nowait
        try:
            async for batch in stream:
                for msg in batch:
                    accept(msg, put)
        except HwbkptError as err:
            return err
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
