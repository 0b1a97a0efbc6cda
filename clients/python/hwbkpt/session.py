"""A blocking session: its requests and its event stream.

Each session reads its event stream on a background thread into a queue, so events are
never lost while the caller is busy, and the thread resumes the session after a break
(``ResumeSession`` + ``StreamEvents(after_seq=last)``) within its lease; the decisions of
that loop are ``hwbkpt._stream_resume``'s, shared with ``AsyncSession``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Self, Unpack

from hwbkpt import _calls as calls
from hwbkpt import models as m
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
from hwbkpt._transport import EventStream, Transport
from hwbkpt.errors import HwbkptError

__all__ = ["Session"]


class _End:
    """Queue marker: the stream is over for good."""


_END = _End()


class Session:
    """One broker session: its requests and its numbered event stream.

    Use :meth:`events` (a generator) or :meth:`next_event` to read events; both raise
    :class:`~hwbkpt.errors.SessionLostError` when the stream broke and the session could not
    be resumed within its lease. Sessions come from :meth:`Client.open_session` and
    :meth:`Client.resume_session`.
    """

    def __init__(
        self,
        transport: Transport,
        ticket: calls.SessionTicket,
        *,
        after_seq: int = 0,
        policy: ReconnectPolicy | None = None,
        on_close: Callable[[Session], None] | None = None,
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
        self._queue: queue.Queue[m.Event | HwbkptError | _End] = queue.Queue()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self._ended = False
        self._thread = threading.Thread(
            target=self._pump, name=f"hwbkpt-events-{ticket.name}", daemon=True
        )
        self._thread.start()

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
    def set_breakpoint(self, **args: Unpack[SpecArgs]) -> m.Breakpoint:
        """Register a request (the keywords: :class:`hwbkpt._args.SpecArgs`). Scope defaults
        to thread if ``tid`` else process; length to 8 (exec: 0, the arch's instruction
        length); access to write; action to notify; priority to the broker's normal (25)."""
        return self.set_spec(make_spec(**args))

    def set_spec(self, spec: m.BreakpointSpec) -> m.Breakpoint:
        return self._transport.call(calls.set_breakpoint(self.token, spec))

    def watch(self, address: int | str, **args: Unpack[WatchArgs]) -> m.Breakpoint:
        """Watch ``address`` (an int, or a symbol name) in a process (``pid``), a thread
        (``tid``) or the kernel (``kernel=True``); ``halt=True`` stops the thread on each hit;
        ``stop_after`` N: the broker reports N hits, then removes the request itself. The
        other keywords and defaults are :meth:`set_breakpoint`'s."""
        return self.set_spec(watch_spec(address, **args))

    def modify(
        self,
        breakpoint_id: int,
        *,
        priority: int | str | None = None,
        action: m.Action | str | None = None,
        filter: m.Filter | None = None,
    ) -> m.Breakpoint:
        """Change priority, action or filter; what is ``None`` stays as it is."""
        call = calls.modify(self.token, breakpoint_id, priority, action, filter)
        return self._transport.call(call)

    def remove(self, breakpoint_id: int) -> None:
        self._transport.call(calls.remove(self.token, breakpoint_id))

    def list(self) -> list[m.Breakpoint]:
        found: list[m.Breakpoint] = []
        page = ""
        for _ in range(calls.MAX_SLOT_MAP_PAGES):  # every page of the answer, in order
            part, page = self._transport.call(calls.list_breakpoints(self.token, page))
            found += part
            if not page:
                break
        return found

    def resume_threads(self, tids: Sequence[int] = ()) -> tuple[int, ...]:
        """Resume threads this session halted; no tids means all of them.

        The requests share one ``ResumeThreadsStream`` call, which answers in about half
        the time of a new call; a broker without it is asked with ``ResumeThreads``.
        """
        return self._thread_resumer.resume(self.token, tids)

    # --- processes (native machine) ----------------------------------------------------
    def attach_process(self, pid: int, *, follow_fork: bool = False) -> tuple[int, ...]:
        """Trace a running process for this session (as ``gdb -p``); returns its thread ids.

        The broker lets it go (slots cleared, threads running) once no session needs it:
        after this session ends, unless another session still watches it. A watch on a
        process attaches it by itself; this only keeps it attached without one.
        """
        return self._transport.call(calls.attach_process(self.token, pid, follow_fork))

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
        call = calls.launch_process(self.token, argv, env, cwd, follow_fork)
        return self._transport.call(call)

    def release_process(self, pid: int) -> None:
        """Let a program this session launched run."""
        self._transport.call(calls.release_process(self.token, pid))

    def detach_process(self, pid: int) -> bool:
        """End this session's hold on ``pid`` (gdb's ``detach``): its requests there are
        removed, a launch it holds runs. True when the broker let the process go."""
        return self._transport.call(calls.detach_process(self.token, pid))

    def resolve_location(
        self, pid: int, location: str, access: m.Access = m.Access.WRITE
    ) -> m.Resolution:
        """What ``location`` ("counter", "cfg.limit") names in ``pid`` now; places nothing."""
        return self._transport.call(calls.resolve_location(self.token, pid, location, access))

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

    # --- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the session on the broker (its requests go) and stop the stream."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            self._transport.call(calls.close_session(self.token))
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
        self._thread_resumer.close()
        with self._lock:
            if self._stream is not None:
                self._stream.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the background stream: carries out StreamResume's steps ------------------------
    def _pump(self) -> None:
        try:
            self._run_stream()
        finally:
            self._queue.put(_END)

    def _run_stream(self) -> None:
        step: Step = self._stream_resume.start()
        while not self._closing.is_set():
            if isinstance(step, ReadStream):
                failure = self._read_stream(step.after_seq)
                if self._closing.is_set():
                    return
                step = self._stream_resume.stream_ended(failure)
            elif isinstance(step, Resume):
                step = self._stream_resume.resume_answered(self._resume_session(step))
            elif isinstance(step, Wait):
                self._closing.wait(step.seconds)
                step = self._stream_resume.waited()
            if isinstance(step, Lose):
                self._queue.put(step.error)
                return

    def _resume_session(self, step: Resume) -> HwbkptError | None:
        timeout = min(self._transport.timeout, step.timeout)
        try:
            self._transport.call(calls.resume_session(self.token), timeout=timeout)
        except HwbkptError as err:
            return err
        return None

    def _read_stream(self, after_seq: int) -> HwbkptError | None:
        """Read one stream to its end; the error that ended it, or None for a clean end."""
        with self._lock:
            if self._closing.is_set():
                return None
            stream = self._transport.stream_events(calls.stream_events(after_seq), self.token)
            self._stream = stream
        accept, put = self._stream_resume.cursor.accept, self._queue.put
        try:
            for batch in stream:
                for msg in batch:
                    accept(msg, put)
        except HwbkptError as err:
            return err
        finally:
            with self._lock:
                self._stream = None
        return None
