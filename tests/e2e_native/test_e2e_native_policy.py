"""Issue 12, item 2: what an identity may touch, on real processes of real users.

``u1000`` may touch the processes of uid 1000 only, without kernel rights, halting or
launching, at priorities up to 50. A writer runs as root and another as uid 1000
(``setpriv``); the broker runs natively with the policy, the client comes over TLS with
u1000's bearer token.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_e2e_support import Target
from security_support import Secured, start_secured

import hwbkpt

pytestmark = pytest.mark.e2e

POLICY = """
[identities.u1000]
uids = [1000]
max_priority = 50
"""
KERNEL_ADDRESS = 0xFFFFFFFF81000000


@pytest.fixture
def broker(tmp_path: Path, bins: dict[str, str]) -> Iterator[Secured]:
    s = start_secured(tmp_path, policy=POLICY, machine="native")
    yield s
    assert s.daemon.stop() == 0, s.daemon.log()


@pytest.fixture
def user_writer(bins: dict[str, str]) -> Iterator[Target]:
    """tests/c/writer.c running as uid 1000 (from a copy uid 1000 can execute)."""
    where = Path(tempfile.mkdtemp(prefix="hwbkpt-u1000-"))
    try:
        where.chmod(0o755)
        exe = where / "writer"
        shutil.copy(bins["writer"], exe)
        exe.chmod(0o755)
        argv = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", str(exe)]
        target = Target([*argv, str(10**9), "1000", "nowait"])
        yield target
        target.kill()
    finally:
        shutil.rmtree(where)


@pytest.fixture
def root_writer(bins: dict[str, str]) -> Iterator[Target]:
    target = Target([bins["writer"], str(10**9), "1000", "nowait"])
    yield target
    target.kill()


def _refused(call: object, code: str = "PERMISSION_DENIED") -> hwbkpt.HwbkptError:
    assert callable(call)
    with pytest.raises(hwbkpt.HwbkptError) as info:
        call()
    assert info.value.code == code, info.value
    return info.value


def test_item2_uid_1000_identity_on_root_and_user_processes(
    broker: Secured, root_writer: Target, user_writer: Target
) -> None:
    assert os.stat(f"/proc/{user_writer.pid}").st_uid == 1000
    assert os.stat(f"/proc/{root_writer.pid}").st_uid == 0
    with broker.client("u1000") as client, client.open_session("u1000-s") as s:
        # A root process: neither attached nor watched.
        err = _refused(lambda: s.attach_process(root_writer.pid))
        assert f"may not touch process {root_writer.pid} (uid 0" in err.message
        err = _refused(lambda: s.watch(root_writer.address, pid=root_writer.pid))
        assert [v.field for v in err.field_violations] == ["spec.pid"]
        # A uid-1000 process: attached, watched, and its hits arrive.
        assert s.attach_process(user_writer.pid) == (user_writer.pid,)
        bp = s.watch(user_writer.address, pid=user_writer.pid, priority=50)
        hit = next(e for e in s.events(timeout=10) if e.kind == "hit")
        assert (hit.breakpoint_id, getattr(hit.payload, "pid", 0)) == (bp.id, user_writer.pid)
        # Priority above its cap, halting, kernel scope and launching: refused, precisely.
        err = _refused(lambda: s.watch(user_writer.address + 8, pid=user_writer.pid, priority=75))
        assert "priorities up to 50, not 75" in err.message
        err = _refused(lambda: s.modify(bp.id, priority=75))
        _refused(lambda: s.watch(user_writer.address + 8, pid=user_writer.pid, halt=True))
        err = _refused(lambda: s.watch(KERNEL_ADDRESS, kernel=True))
        assert "may not watch kernel addresses" in err.message
        _refused(lambda: s.launch_process(["/bin/true"]))
        assert [b.id for b in s.list()] == [bp.id]  # nothing refused changed anything
    # The root process was never traced.
    with open(f"/proc/{root_writer.pid}/status", encoding="ascii") as status:
        assert "TracerPid:\t0" in status.read()


# --- item 6: a SIGHUP reload narrows what open sessions hold ------------------------------
BEFORE_RELOAD = """
[identities.u1000]
any_process = true
max_priority = 50

[identities.carol]
any_process = true

[identities.bob]
any_process = true
"""
#: u1000 narrowed to uid 1000's processes, carol unchanged, bob gone.
AFTER_RELOAD = """
[identities.u1000]
uids = [1000]
max_priority = 50

[identities.carol]
any_process = true
"""


def _until(what: object, timeout: float = 10.0) -> None:
    assert callable(what)
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _tracer(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(ln for ln in status if ln.startswith("TracerPid:")).split()[1]


def _drain(s: hwbkpt.Session, seconds: float) -> list[hwbkpt.Event]:
    out: list[hwbkpt.Event] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        event = s.next_event(timeout=left)
        if event is None:
            break
        out.append(event)
    return out


def test_item6_sighup_reload_removes_what_the_new_policy_forbids(
    tmp_path: Path, bins: dict[str, str], root_writer: Target, user_writer: Target
) -> None:
    secured = start_secured(tmp_path, policy=BEFORE_RELOAD, machine="native")
    d = secured.daemon
    root, user = root_writer, user_writer
    try:
        with (
            secured.client("u1000") as u_c,
            secured.client("carol") as carol_c,
            secured.client("bob") as bob_c,
            u_c.open_session("narrowed") as narrowed,
            carol_c.open_session("stays") as stays,
        ):
            gone = bob_c.open_session("gone")
            narrowed.attach_process(root.pid)
            on_root = narrowed.watch(root.address, pid=root.pid)
            on_user = narrowed.watch(user.address, pid=user.pid)
            carols = stays.watch(user.address, pid=user.pid)
            bobs = gone.watch(user.address, pid=user.pid)
            hit_by = {e.breakpoint_id for e in _drain(narrowed, 1.0) if e.kind == "hit"}
            assert hit_by == {on_root.id, on_user.id}
            assert _tracer(root.pid) != "0"

            secured.policy.write_text(AFTER_RELOAD)
            d.proc.send_signal(signal.SIGHUP)
            _until(lambda: '"method": "policy_reload", "outcome": "OK"' in d.log())

            # u1000: its request on the root process removed, naming the reload; the one
            # on its own process stays and still hits; the root process is let go.
            after = _drain(narrowed, 1.5)
            removed = [(e.breakpoint_id, e.payload) for e in after if e.kind == "removed"]
            assert removed == [(on_root.id, hwbkpt.Removed(reason="policy"))]
            assert [b.id for b in narrowed.list()] == [on_user.id]
            last_removed = max(e.seq for e in after if e.kind == "removed")
            assert {e.breakpoint_id for e in after if e.kind == "hit" and e.seq > last_removed} == {
                on_user.id
            }
            _until(lambda: _tracer(root.pid) == "0")
            err = _refused(lambda: narrowed.watch(root.address, pid=root.pid))
            assert f"may not touch process {root.pid}" in err.message
            # carol: untouched, still hit.
            kept = _drain(stays, 1.0)
            assert [e for e in kept if e.kind == "removed"] == []
            assert {e.breakpoint_id for e in kept if e.kind == "hit"} == {carols.id}
            assert [b.id for b in stays.list()] == [carols.id]
            # bob: gone from the policy, so its session is closed, its request removed.
            seen: list[hwbkpt.Event] = []
            with pytest.raises(hwbkpt.HwbkptError) as ended:
                seen.extend(gone.events(timeout=10))
            assert [(e.breakpoint_id, e.payload) for e in seen if e.kind == "removed"] == [
                (bobs.id, hwbkpt.Removed(reason="policy"))
            ]
            assert ended.value.code == "PERMISSION_DENIED", ended.value
            assert "no longer in the broker's policy" in ended.value.message
            gone.detach()
    finally:
        assert d.stop() == 0, d.log()
