"""``make demo`` on a real process: the demo compiles demo/target.c and tells the story on
``hwbkptd --machine native``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from native_e2e_support import REPO, native_reason
from native_support import require_native

pytestmark = [pytest.mark.native, pytest.mark.e2e]


@pytest.mark.parametrize("arming", ["perf", "debugreg"])
def test_the_demo_runs_on_a_real_process(arming: str) -> None:
    reason = native_reason()
    if reason:
        require_native(reason)
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--arming", arming],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    lines = out.splitlines()

    def index(*words: str) -> int:
        found = [i for i, line in enumerate(lines) if all(w in line for w in words)]
        assert found, f"no line with {words} in:\n{out}"
        return found[0]

    assert index("demo:", "real process") == 0
    index("broker", "--machine native", f"{arming} arming")
    index("target", "demo/target.c")
    displaced = index("ide", "DISPLACED", "by tracer#", "priority 75")
    only_holder = index("tracer", "HIT total", "value 7, old 0")
    nothing = index("ide", "no hit")
    restored = index("ide", "RESTORED", "total")
    after = index("ide", "HIT total", "value 42, old 7")
    assert displaced < only_holder < nothing < restored < after
    assert lines[-1].endswith("exit 0")
    assert done.stderr == ""
