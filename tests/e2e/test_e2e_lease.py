"""Issue 2, item 6: leases. A killed client's requests go after its lease and what they
displaced comes back; a client whose connection breaks and comes back within its lease
keeps its requests and gets the events it missed, numbered without gaps.

The broken connection is real: the library client talks TCP to a proxy in this process
that forwards to the daemon's Unix socket, and the proxy drops every connection on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from e2e_support import Daemon, expect_event

import hwbkpt

pytestmark = pytest.mark.e2e
LEASE = 2.0
HWBKPTD_OPTIONS = {"lease": LEASE}

BASE = 0x601000


class CuttableProxy:
    """127.0.0.1:port -> a Unix socket, with a switch that drops and refuses connections."""

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.up = True
        self._links: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self, coro: object) -> asyncio.Server:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)  # type: ignore[arg-type]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._links.discard(writer)
            writer.transport.abort()

    def cut(self) -> None:
        """Drop every connection at once (like a network failure) and refuse new ones."""

        def drop() -> None:
            self.up = False
            for w in list(self._links):
                w.transport.abort()
            self._links.clear()

        self._loop.call_soon_threadsafe(drop)

    def mend(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "up", True)

    def close(self) -> None:
        self.cut()

        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def proxy(daemon: Daemon) -> Iterator[CuttableProxy]:
    p = CuttableProxy(daemon.address.removeprefix("unix:"))
    yield p
    p.close()


def _holders(client: hwbkpt.Client, pid: int) -> set[str]:
    return {
        h.session_name for t in client.slot_map(pid).threads for s in t.slots for h in s.holders
    }


def test_killed_client_loses_its_requests_after_the_lease(
    daemon: Daemon, client: hwbkpt.Client
) -> None:
    pid, _ = daemon.spawn()
    a = client.open_session("A")
    bps = [a.watch(BASE + 8 * i, pid=pid) for i in range(4)]
    b = daemon.watch("--pid", str(pid), hex(BASE + 64), "--priority", "high", "--name", "B")
    assert expect_event(a, "displaced").breakpoint_id == bps[-1].id

    b.kill()
    killed = time.monotonic()
    # Within its lease the killed client still holds its slot.
    assert "B" in _holders(client, pid)
    restored = expect_event(a, "restored", timeout=LEASE + 5)
    assert time.monotonic() - killed >= LEASE * 0.9
    assert restored.breakpoint_id == bps[-1].id
    assert "B" not in _holders(client, pid)
    assert all(bp.session_name != "B" for bp in client.slot_map(pid).waiting)
    # And A's restored request works again.
    assert client.sim_touch(pid, bps[-1].spec.address, value=3).breakpoint_ids == (bps[-1].id,)
    a.close()


def test_library_client_resumes_within_its_lease_without_gaps(
    daemon: Daemon, client: hwbkpt.Client, proxy: CuttableProxy
) -> None:
    pid, _ = daemon.spawn()
    seqs: list[int] = []
    with hwbkpt.Client(f"tcp:127.0.0.1:{proxy.port}") as remote:
        # Its own lease is longer than the daemon's default, and the outage is longer
        # than the default: the session survives only because its lease is honoured.
        a = remote.open_session("A", lease_seconds=15)
        bps = [a.watch(BASE + 8 * i, pid=pid) for i in range(4)]
        seqs += [e.seq for e in _quiet(a)]

        proxy.cut()
        time.sleep(0.3)
        b = daemon.watch("--pid", str(pid), hex(BASE + 64), "--priority", "high", "--name", "B")
        for value in (1, 2, 3):
            client.sim_touch(pid, bps[0].spec.address, value=value)
        assert b.interrupt() == 130
        time.sleep(LEASE + 0.5)
        assert a.reconnects == 0
        proxy.mend()

        got: list[hwbkpt.Event] = []
        expect_event(a, "restored", timeout=15, seen=got)
        assert a.reconnects >= 1
        seqs += [e.seq for e in got]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert a.missed_events == 0
        kinds = [e.kind for e in got]
        assert kinds.count("displaced") == 1
        hits = [e.payload for e in got if isinstance(e.payload, hwbkpt.Hit)]
        assert [(h.value_int, h.old_value_int) for h in hits] == [(1, 0), (2, 1), (3, 2)]
        assert sorted(bp.id for bp in a.list()) == sorted(bp.id for bp in bps)
        a.close()


async def test_async_client_resumes_within_its_lease(
    daemon: Daemon, client: hwbkpt.Client, proxy: CuttableProxy
) -> None:
    pid, _ = daemon.spawn()
    async with hwbkpt.AsyncClient(f"tcp:127.0.0.1:{proxy.port}") as remote:
        a = await remote.open_session("async-A", lease_seconds=15)
        bp = await a.watch(BASE, pid=pid)
        first = await a.next_event(5)
        assert first is not None
        assert first.kind == "state"
        proxy.cut()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(client.sim_touch, pid, BASE, value=11)
        await asyncio.sleep(LEASE + 0.5)
        proxy.mend()
        hit = await a.next_event(15)
        assert hit is not None
        assert (hit.kind, hit.seq, hit.breakpoint_id) == ("hit", first.seq + 1, bp.id)
        assert a.reconnects >= 1
        assert [x.id for x in await a.list()] == [bp.id]


async def test_async_session_events_iterator(daemon: Daemon) -> None:
    pid, _ = daemon.spawn()
    async with hwbkpt.AsyncClient(daemon.address) as c, await c.open_session("iter") as s:
        await s.watch(BASE, pid=pid, length=4)
        await c.sim_touch(pid, BASE, value=5, size=4)
        kinds = []
        async for ev in s.events(timeout=2):
            kinds.append(ev.kind)
            if ev.kind == "hit":
                assert isinstance(ev.payload, hwbkpt.Hit)
                assert ev.payload.value_int == 5
                break
        assert kinds[-1] == "hit"


def test_session_lost_after_the_lease_is_reported(daemon: Daemon, proxy: CuttableProxy) -> None:
    with hwbkpt.Client(f"tcp:127.0.0.1:{proxy.port}") as remote:
        a = remote.open_session("short", lease_seconds=1)
        assert a.lease_seconds == 1  # the client gives up at lease + grace (1 s)
        proxy.cut()
        with pytest.raises(hwbkpt.SessionLostError, match="could not be resumed"):
            _read_for(a, 10)
        proxy.mend()
        with contextlib.suppress(hwbkpt.HwbkptError):
            a.close()


def _quiet(session: hwbkpt.Session, seconds: float = 0.4) -> list[hwbkpt.Event]:
    got = []
    while (ev := session.next_event(seconds)) is not None:
        got.append(ev)
    return got


def _read_for(session: hwbkpt.Session, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        session.next_event(0.2)
