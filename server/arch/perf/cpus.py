"""Online CPUs, and CPU hotplug followed through the kernel's uevent netlink socket.

A CPU-bound perf event stays dead after its CPU goes offline and comes back,
so every ``offline`` and ``online`` must be seen, in order, even when the two
come in quick succession: the monitor acts on each uevent's ACTION rather than
comparing snapshots of ``/sys/devices/system/cpu/online``. The socket is read
with ``loop.add_reader``; nothing polls. If the socket's queue overflows
(ENOBUFS), events were lost and every online CPU is treated as having gone
offline and back.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = [
    "CPU_ONLINE",
    "NETLINK_KOBJECT_UEVENT",
    "CpuEvent",
    "CpuMonitor",
    "parse_cpu_list",
    "parse_uevent",
    "read_online",
]

CPU_ONLINE = Path("/sys/devices/system/cpu/online")
NETLINK_KOBJECT_UEVENT = 15
#: Multicast group 1 carries the kernel's own uevents (group 2 is udevd's rebroadcast).
_KERNEL_GROUP = 1
_DEVPATH = re.compile(r"^/devices/system/cpu/cpu(\d+)$")
_RCVBUF = 1 << 20

_log = structlog.get_logger("hwbkptd.perf")


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0-3,5,7-8"`` -> {0, 1, 2, 3, 5, 7, 8}; "" -> empty."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}") from None
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def read_online(path: Path = CPU_ONLINE) -> frozenset[int]:
    return parse_cpu_list(path.read_text())


@dataclass(frozen=True, slots=True)
class CpuEvent:
    action: str  # "online" or "offline"
    cpu: int


def parse_uevent(data: bytes) -> CpuEvent | None:
    """A CPU online/offline uevent (``ACTION=...``, ``DEVPATH=/devices/system/cpu/cpuN``)."""
    fields: dict[str, str] = {}
    for item in data.split(b"\0")[1:]:
        key, sep, value = item.partition(b"=")
        if sep:
            fields[key.decode("ascii", "replace")] = value.decode("ascii", "replace")
    action = fields.get("ACTION")
    if action not in ("online", "offline"):
        return None
    m = _DEVPATH.match(fields.get("DEVPATH", ""))
    if m is None:
        return None
    return CpuEvent(action, int(m.group(1)))


class CpuMonitor:
    """Keeps the set of online CPUs and calls back on every change, in order.

    ``on_offline(cpu)`` runs after the CPU left ``online``; ``on_online(cpu)``
    after it joined. Both run on the event loop inside the socket's reader
    callback, so nothing else on the loop runs between a CPU's arrival and its
    callback.
    """

    def __init__(
        self,
        on_online: Callable[[int], None],
        on_offline: Callable[[int], None],
        *,
        online_path: Path = CPU_ONLINE,
    ) -> None:
        self._on_online = on_online
        self._on_offline = on_offline
        self._path = online_path
        self._online: frozenset[int] = frozenset()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        #: Why hotplug is not followed ("" when it is).
        self.reason = "not started"

    @property
    def online(self) -> frozenset[int]:
        return self._online

    @property
    def following(self) -> bool:
        return self._sock is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe first, then read the online set, so no change falls between the two."""
        self._loop = loop
        try:
            sock = socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                NETLINK_KOBJECT_UEVENT,
            )
        except OSError as exc:
            self.reason = f"uevent netlink socket unavailable: {exc.strerror}"
        else:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((0, _KERNEL_GROUP))
            except OSError as exc:
                sock.close()
                self.reason = f"cannot subscribe to kernel uevents: {exc.strerror}"
            else:
                self._sock = sock
                self.reason = ""
                loop.add_reader(sock.fileno(), self._readable)
        if self._sock is None:
            _log.warning("cpu_hotplug_not_followed", reason=self.reason)
        self._online = read_online(self._path)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            self.reason = "closed"
        self._wake()

    async def wait_synced(self) -> bool:
        """Wait until every change visible in sysfs has been seen and called back.

        False at once when hotplug is not followed. It sleeps on the monitor's
        own wake-ups, never on a timer; bound it with ``asyncio.timeout``.
        """
        loop = asyncio.get_running_loop()
        while read_online(self._path) != self._online:
            if self._sock is None:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            await fut
        return True

    def handle(self, event: CpuEvent) -> None:
        """Apply one CPU uevent, calling back as needed (the socket reader uses this)."""
        if event.action == "offline":
            if event.cpu in self._online:
                self._online = self._online - {event.cpu}
                self._call(self._on_offline, event.cpu)
            return
        if event.cpu in self._online:
            # Seen online already (read at start, or a duplicate): its events may
            # predate an offline we missed, so go through offline first.
            self._online = self._online - {event.cpu}
            self._call(self._on_offline, event.cpu)
        self._online = self._online | {event.cpu}
        self._call(self._on_online, event.cpu)

    def resync(self) -> None:
        """After lost uevents: every CPU may have flapped, so each online one is redone."""
        now = read_online(self._path)
        for cpu in sorted(self._online - now):
            self.handle(CpuEvent("offline", cpu))
        for cpu in sorted(now):
            self.handle(CpuEvent("online", cpu))

    # --- internals -------------------------------------------------------------
    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data, (portid, _groups) = sock.recvfrom(16384)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    _log.warning("cpu_uevents_lost")
                    self.resync()
                    continue
                raise
            if portid != 0:  # only the kernel speaks on this group; ignore anyone else
                continue
            event = parse_uevent(data)
            if event is not None:
                self.handle(event)
        self._wake()

    def _call(self, callback: Callable[[int], None], cpu: int) -> None:
        try:
            callback(cpu)
        except Exception:
            _log.exception("cpu_hotplug_callback_failed", cpu=cpu)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
