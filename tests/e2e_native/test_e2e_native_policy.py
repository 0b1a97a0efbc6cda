"""Issue 12, item 2: what an identity may touch, on real processes of real users.

``u1000`` may touch the processes of uid 1000 only, without kernel rights, halting or
launching, at priorities up to 50. A writer runs as root and another as uid 1000
(``setpriv``); the broker runs natively with the policy, the client comes over TLS with
u1000's bearer token.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
