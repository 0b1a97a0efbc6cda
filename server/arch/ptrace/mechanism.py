"""PtraceMechanism: real user-thread breakpoints on Linux x86_64 (DESIGN sections 4 and 5).

The event loop talks to the tracer thread (tracer.py) through futures and
gets the tracer's messages (messages.py) back in batches: the tracer appends to
a pending list and wakes the loop (the relay eventfd) only when no delivery is
outstanding; at a low rate each message is delivered as it comes; under load
the loop delivers every window what gathered meanwhile, in one callback
(pacing.py decides). Consecutive hits reach the sink as one ``on_hits`` call
with the list the tracer built (the loop does nothing per hit).

SIGCHLD must be blocked in every thread of the broker (the tracer reads it from
a signalfd): the constructor blocks it in the calling thread, so build the
mechanism before starting other threads. asyncio's child watcher waits with
waitpid on its own pids and does not need the signal. The blocked mask passes
through fork and exec: programs the broker starts otherwise than through
``launch`` (which restores it) begin with SIGCHLD blocked; unblock it there (a
shell waiting for its children, for one, needs it).

Only one instance may run per process (SIGCHLD is per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import platform
import threading
from collections.abc import Callable, Mapping, Sequence

from hwbkptd.arch.ptrace.arming_debugreg import DebugregArming
from hwbkptd.arch.ptrace.arming_perf import PerfArming, perf_sigtrap_works
from hwbkptd.arch.ptrace.launch import resolve
from hwbkptd.arch.ptrace.memory import read_memory
from hwbkptd.arch.ptrace.messages import Message, deliver
from hwbkptd.arch.ptrace.pacing import DeliveryPacing
from hwbkptd.arch.ptrace.state import Arming
from hwbkptd.arch.ptrace.tracer import Tracer
from hwbkptd.arch.ptrace.waiter import block_sigchld, threads_not_blocking_sigchld
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from hwbkptd.core.mechanism import MechanismInfo, MechanismSink, Refusal, SlotWrite

__all__ = ["ARMINGS", "PtraceMechanism", "ptrace_available"]

_log = logging.getLogger("hwbkptd.ptrace")

ARMINGS = ("auto", "perf", "debugreg")
#: How long close() waits for every thread to be detached before letting the kernel do it.
CLOSE_TIMEOUT = 5.0

_NOTE_PERF = (
    "perf arming: each slot is a perf breakpoint event bound to the thread with sigtrap; "
    "if the broker dies its descriptors close, the slots vanish and the target runs on, "
    "except a thread caught between a trap and the tracer collecting it: the kernel "
    "delivers that SIGTRAP and the thread dies. Measured here (kill -9 of the broker, four "
    "NOTIFY watches written every 1 ms or every 100 us, tests/e2e_native/kill_rate.py): "
    "the target died in 7 to 11 of 50 runs at 1 ms and 17 to 23 of 50 runs at 100 us, and "
    "in about half the runs when it writes in a tight loop. Watch with --nonstop (perf samples, "
    "no ptrace) where the target must survive a broker crash"
)
_NOTE_NOT_REALTIME = (
    "the ptrace tracer thread could not get real-time priority ({why}): traps wait longer "
    "for it, and a kill -9 of the broker kills NOTIFY targets more often than said above"
)
_NOTE_DEBUGREG = (
    "debugreg arming: DR0-DR3/DR7 are written with PTRACE_POKEUSER; if the broker dies "
    "(kill -9) the registers stay armed and the target dies of SIGTRAP at its next hit"
)
_NOTE_DEBUGREG_RESERVED = (
    "debugreg arming: the kernel keeps a register reserved once written, until the thread "
    "exits or execs, so perf events (perf arming, perf itself) cannot use it meanwhile"
)
_NOTE_IP = "data hits report the instruction after the access (x86 data breakpoints are traps)"


def _is_x86_64_linux() -> bool:
    return platform.system() == "Linux" and platform.machine() == "x86_64"


def ptrace_available() -> tuple[bool, str]:
    """Whether the mechanism can work here, without building one (no signal mask change)."""
    if not _is_x86_64_linux():
        return False, f"ptrace arming needs Linux on x86_64, this is {platform.machine()}"
    works, why = perf_sigtrap_works()
    if not works:
        return True, f"{why}; debug registers (--arming debugreg) will be used"
    return True, ""


class PtraceMechanism:
    name = "ptrace"
    #: The running instance: SIGCHLD is per process, so two tracers would steal each
    #: other's wake-ups.
    _running_instance: PtraceMechanism | None = None

    def __init__(self, arming: str = "auto") -> None:
        if arming not in ARMINGS:
            raise InvalidArgument("arming", f"unknown arming {arming!r}: one of {ARMINGS}")
        self._available = True
        self._reason = ""
        self._arming_name = arming
        if not _is_x86_64_linux():
            self._available = False
            self._reason = f"ptrace arming needs Linux on x86_64, this is {platform.machine()}"
        else:
            block_sigchld()
            if arming in ("auto", "perf"):
                works, why = perf_sigtrap_works()
                if works:
                    self._arming_name = "perf"
                elif arming == "auto":
                    self._arming_name = "debugreg"
                    self._reason = f"{why}; falling back to debug registers"
                else:
                    self._available = False
                    self._reason = why + " (needs Linux 5.13 or later)"
        self._sink: MechanismSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tracer: Tracer | None = None
        self._relay = -1
        self._lock = threading.Lock()
        self._pending: list[Message] = []
        self._scheduled = False
        self._pacing = DeliveryPacing()
        self._closed = False

    @property
    def arming(self) -> str:
        return self._arming_name

    @property
    def realtime(self) -> bool:
        """The tracer thread runs in real time (SCHED_FIFO: see tracer.RT_PRIORITY)."""
        return self._tracer is not None and self._tracer.realtime

    @property
    def spins(self) -> int:
        """How many of the tracer's waits began with a spin (see tracer.SPIN_NS)."""
        return self._tracer.spins if self._tracer is not None else 0

    # --- Mechanism ---------------------------------------------------------------------
    def info(self) -> MechanismInfo:
        notes: list[str] = []
        if self._arming_name == "debugreg":
            notes += [_NOTE_DEBUGREG, _NOTE_DEBUGREG_RESERVED]
        else:
            notes.append(_NOTE_PERF)
        tracer = self._tracer
        if tracer is not None and tracer.realtime_refused:
            notes.append(_NOTE_NOT_REALTIME.format(why=tracer.realtime_refused))
        notes.append(_NOTE_IP)
        stray = threads_not_blocking_sigchld() if self._available else []
        if stray:
            notes.append(
                f"threads {stray} do not block SIGCHLD and may take stops' wake-ups away: "
                "create the mechanism before other threads"
            )
        return MechanismInfo(
            name=self.name,
            available=self._available,
            reason=self._reason,
            notes=tuple(notes),
            arming=self._arming_name,
        )

    def start(self, sink: MechanismSink) -> None:
        if not self._available:
            raise FailedPrecondition(f"ptrace mechanism unavailable: {self._reason}")
        if self._tracer is not None:
            raise FailedPrecondition("the ptrace mechanism is already started")
        if PtraceMechanism._running_instance is not None:
            raise FailedPrecondition(
                "another ptrace mechanism runs in this process (they would share SIGCHLD)"
            )
        PtraceMechanism._running_instance = self
        block_sigchld()
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        arming: Arming = PerfArming() if self._arming_name == "perf" else DebugregArming()
        self._tracer = Tracer(arming, self._post)
        self._relay = self._tracer.relay
        self._loop.add_reader(self._relay, self._on_relay)
        self._tracer.start()

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        if not writes:
            return []
        refusals: list[Refusal] = await asyncio.wrap_future(self._running().apply(list(writes)))
        return refusals

    async def resume(self, tid: int) -> None:
        await asyncio.wrap_future(self._running().resume(tid))

    async def read_memory(self, pid: int, address: int, length: int) -> bytes:
        if length < 0:
            raise InvalidArgument("length", f"must not be negative, got {length}")
        try:
            return read_memory(pid, address, length)
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise NotFound("pid", f"no process {pid}") from None
            if err.errno == errno.EPERM:
                raise PermissionDenied(f"reading memory of process {pid}: {err.strerror}") from None
            raise InvalidArgument(
                "address", f"{address:#x}+{length} is not readable in process {pid}"
            ) from None

    async def attach(
        self,
        pid: int,
        follow_fork: bool = False,
        nonstop: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Sequence[int]:
        if pid <= 0:
            raise InvalidArgument("pid", f"must be a positive process id, got {pid}")
        tids: list[int] = await asyncio.wrap_future(
            self._running().attach(pid, follow_fork, progress)
        )
        return tids

    async def detach(self, pid: int) -> None:
        await asyncio.wrap_future(self._running().detach(pid))

    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool = False
    ) -> int:
        path = resolve(argv, env, cwd)
        pid: int = await asyncio.wrap_future(
            self._running().launch(path, list(argv), dict(env), cwd, follow_fork)
        )
        return pid

    async def release(self, pid: int) -> None:
        await asyncio.wrap_future(self._running().release(pid))

    async def kill_launched(self, pid: int) -> None:
        await asyncio.wrap_future(self._running().kill_launched(pid))

    async def close(self) -> None:
        tracer, self._tracer = self._tracer, None
        self._closed = True
        if PtraceMechanism._running_instance is self:
            PtraceMechanism._running_instance = None
        if tracer is None:
            return
        if tracer.alive():
            try:
                await asyncio.wait_for(asyncio.wrap_future(tracer.close()), CLOSE_TIMEOUT)
            except (TimeoutError, RuntimeError):
                _log.warning("ptrace: not every thread detached in time; stopping the tracer")
                if tracer.alive():
                    tracer.stop_now()
            await asyncio.to_thread(tracer.join, CLOSE_TIMEOUT)
        self._on_relay()  # what the thread said last
        if tracer.alive():
            _log.error("ptrace: the tracer thread did not stop")
            return
        if self._loop is not None:
            self._loop.remove_reader(tracer.relay)
        self._relay = -1
        for fd in tracer.shared_fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- plumbing ------------------------------------------------------------------------
    def _running(self) -> Tracer:
        if self._tracer is None or not self._tracer.alive():
            raise FailedPrecondition("the ptrace mechanism is not running")
        return self._tracer

    def _post(self, out: list[Message]) -> None:
        """Tracer thread: queue messages; one wake-up carries all queued meanwhile.

        The wake-up is the tracer's relay eventfd, read by the loop (add_reader):
        the tracer never touches the loop's own descriptors (see tracer.py).
        """
        with self._lock:
            self._pending.extend(out)
            if self._scheduled:
                return
            self._scheduled = True
        if self._relay >= 0:
            with contextlib.suppress(OSError):
                os.eventfd_write(self._relay, 1)

    def _on_relay(self) -> None:
        if self._relay >= 0:
            with contextlib.suppress(OSError):
                os.eventfd_read(self._relay)
        self._deliver()

    def _deliver(self) -> None:
        with self._lock:
            out, self._pending = self._pending, []
            if not out:
                # Nothing came during the window: idle again, the next message wakes us.
                self._scheduled = False
                self._pacing.went_idle()
                return
        sink = self._sink
        size = deliver(sink, out) if sink is not None else len(out)
        loop = self._loop
        if loop is None:
            return
        delay = self._pacing.after_delivery(size, loop.time())
        if delay is None:
            # Light traffic: gather nothing, the next message wakes the loop at once.
            with self._lock:
                if not self._pending:
                    self._scheduled = False
                    return
            loop.call_soon(self._deliver)  # posted during the dispatch, without a wake-up
            return
        loop.call_later(delay, self._deliver)
