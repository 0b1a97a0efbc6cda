"""Issue 2, item 7: bad input gets its documented status with the field named, and changes
nothing. Request fields go through ``hwbkpt watch`` (exit 2, the error on stderr); what the
command line cannot express (tokens, ids, a 10 MB name) goes through the library.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import Daemon

import hwbkpt

pytestmark = pytest.mark.e2e

DATA = 0x601000


@pytest.fixture(scope="module")
def world(daemon: Daemon) -> Iterator[tuple[int, hwbkpt.Session]]:
    """A process with a bystander session holding two requests: the state to keep intact."""
    pid, _ = daemon.spawn(threads=2)
    with daemon.client() as c:
        s = c.open_session("bystander")
        s.watch(DATA, pid=pid)
        s.watch(DATA + 8, pid=pid, priority="high")
        yield pid, s


def _snapshot(daemon: Daemon) -> tuple[object, ...]:
    with daemon.client() as c:
        return (c.slot_map(), c.describe())


# (arguments after "watch", with {pid} filled in; status; field)
EXEC4 = "--pid {pid} 0x401000 --access exec --length 4"
CLI_CASES = [
    ("zero-length", "--pid {pid} 0x601000 --length 0", "INVALID_ARGUMENT", "spec.length"),
    ("oversized", "--pid {pid} 0x601000 --length 33", "INVALID_ARGUMENT", "spec.length"),
    ("unsplittable", "--pid {pid} 0x601001 --length 31", "INVALID_ARGUMENT", "spec.length"),
    ("exec-length", EXEC4, "INVALID_ARGUMENT", "spec.length"),
    ("kernel-in-user", "--pid {pid} 0xffffffff81000000", "INVALID_ARGUMENT", "spec.address"),
    ("user-in-kernel", "--kernel 0x601000", "INVALID_ARGUMENT", "spec.address"),
    ("non-canonical", "--pid {pid} 0x800000000000", "INVALID_ARGUMENT", "spec.address"),
    ("unknown-pid", "--pid 999999 0x601000", "NOT_FOUND", "spec.pid"),
    ("unknown-tid", "--tid 999999 0x601000", "NOT_FOUND", "spec.tid"),
    ("priority-range", "--pid {pid} 0x601000 --priority 101", "INVALID_ARGUMENT", "spec.priority"),
    ("empty-name", "--pid {pid} 0x601000 --name=", "INVALID_ARGUMENT", "name"),
]


@pytest.mark.parametrize(
    ("args", "code", "field"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_rejects_with_status_and_field(
    daemon: Daemon, world: tuple[int, hwbkpt.Session], args: str, code: str, field: str
) -> None:
    pid, _ = world
    before = _snapshot(daemon)
    done = daemon.cli("watch", *args.format(pid=pid).split(), "--timeout", "5")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"error: {code}: "), done.stderr
    assert f"{field}:" in done.stderr, done.stderr
    assert _snapshot(daemon) == before


def test_cli_rejects_unknown_session_in_json_mode_too(
    daemon: Daemon, world: tuple[int, hwbkpt.Session]
) -> None:
    pid, _ = world
    done = daemon.cli("--json", "watch", "--pid", str(pid), "0x601000", "--length", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("error: INVALID_ARGUMENT: spec.length: ")


def test_unknown_session_token(daemon: Daemon, world: tuple[int, hwbkpt.Session]) -> None:
    before = _snapshot(daemon)
    with daemon.client() as c, pytest.raises(hwbkpt.HwbkptError) as info:
        c.resume_session("no-such-token")
    assert info.value.code == "NOT_FOUND"
    assert info.value.fields == ("token",)
    assert _snapshot(daemon) == before


def test_unknown_request_id(daemon: Daemon, world: tuple[int, hwbkpt.Session]) -> None:
    _, bystander = world
    before = _snapshot(daemon)
    for call in (
        lambda: bystander.remove(987654),
        lambda: bystander.modify(987654, priority=50),
    ):
        with pytest.raises(hwbkpt.HwbkptError) as info:
            call()
        assert info.value.code == "NOT_FOUND"
        assert info.value.fields == ("breakpoint_id",)
    assert _snapshot(daemon) == before


def test_another_sessions_request(daemon: Daemon, world: tuple[int, hwbkpt.Session]) -> None:
    _, bystander = world
    theirs = bystander.list()[0]
    before = _snapshot(daemon)
    with daemon.client() as c, c.open_session("intruder") as intruder:
        for call in (
            lambda: intruder.remove(theirs.id),
            lambda: intruder.modify(theirs.id, priority=100),
        ):
            with pytest.raises(hwbkpt.HwbkptError) as info:
                call()
            assert info.value.code == "PERMISSION_DENIED"
            assert info.value.fields == ("breakpoint_id",)
        assert intruder.list() == []
    assert _snapshot(daemon) == before
    assert theirs.id in {bp.id for bp in bystander.list()}


@pytest.mark.parametrize("size", [129, 10_000_000], ids=["129-chars", "10MB"])
def test_oversized_name(daemon: Daemon, world: tuple[int, hwbkpt.Session], size: int) -> None:
    before = _snapshot(daemon)
    with daemon.client() as c, pytest.raises(hwbkpt.HwbkptError) as info:
        c.open_session("n" * size)
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.fields == ("name",)
    assert _snapshot(daemon) == before


def test_bad_command_line_never_reaches_the_broker(daemon: Daemon) -> None:
    done = daemon.cli("watch", "--pid", "1", "0x10", "--access", "execute")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_unreachable_broker_exits_1(tmp_path: object) -> None:
    import subprocess

    from e2e_support import HWBKPT

    done = subprocess.run(
        [str(HWBKPT), "--server", f"unix:{tmp_path}/none.sock", "info"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: UNAVAILABLE: ")
