"""``make demo``'s module run as a test on the simulated machine: it exits 0 and tells the
whole story (the story on a real process is in tests/e2e_native)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from e2e_support import REPO

pytestmark = pytest.mark.e2e


def test_demo_runs_and_tells_the_story() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--machine", "sim"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    lines = out.splitlines()

    def index(*words: str) -> int:
        found = [i for i, line in enumerate(lines) if all(w in line for w in words)]
        assert found, f"no line with {words} in:\n{out}"
        return found[0]

    displaced = index("ide", "DISPLACED", "by tracer#", "priority 75")
    only_holder = index("tracer", "HIT total", "value 7, old 0")
    nothing = index("ide", "no hit")
    restored = index("ide", "RESTORED", "total")
    after = index("ide", "HIT total", "value 42, old 7")
    assert displaced < only_holder < nothing < restored < after
    assert "slots" in out
    assert lines[-1].endswith("exit 0")
    assert done.stderr == ""


def test_demo_refuses_a_machine_it_cannot_show() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--machine", "vax"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "use auto, native or a sim layout" in done.stderr
