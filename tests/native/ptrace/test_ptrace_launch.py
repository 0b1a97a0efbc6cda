"""Checks made before a launch forks anything (the launch itself: test_mechanism.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbkptd.arch.ptrace.launch import resolve
from hwbkptd.core.errors import InvalidArgument, NotFound


def test_resolves_through_path_and_cwd() -> None:
    assert resolve(["sh"], {"PATH": "/usr/bin:/bin"}, "/") in ("/usr/bin/sh", "/bin/sh")
    assert resolve(["/bin/sh", "-c", "true"], {}, "/") == "/bin/sh"
    assert resolve(["./sh"], {}, "/bin") == "/bin/./sh"


@pytest.mark.parametrize(
    ("argv", "cwd", "error", "field"),
    [
        ([], "/", InvalidArgument, "argv"),
        ([""], "/", InvalidArgument, "argv"),
        (["no-such-program-hwbkpt"], "/", NotFound, "argv"),
        (["/no/such/file"], "/", NotFound, "argv"),
        (["sh"], "/no/such/dir", NotFound, "cwd"),
    ],
)
def test_refusals(argv: list[str], cwd: str, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as err:
        resolve(argv, {"PATH": "/usr/bin:/bin"}, cwd)
    assert getattr(err.value, "field", None) == field


def test_a_file_that_is_not_executable(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(InvalidArgument) as err:
        resolve([str(plain)], {}, "/")
    assert "not executable" in err.value.reason
