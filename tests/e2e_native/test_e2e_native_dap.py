"""Issue 15, items 1-2: `hwbkpt dap` driven by the official DAP test client.

tests/node/dap_story.js (@vscode/debugadapter-testsupport) starts ``hwbkpt dap`` on stdio
against a native broker and tests/c/counter.c: a data breakpoint stops in bump() with the
value and the value before, continue resumes; a second client (this test, in Python) takes
the slots at a higher priority and the adapter's breakpoint turns unverified naming it, then
verified again when it leaves. The launch story: a program held at its first instruction
until configurationDone stops on its very first write.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from c_programs import nm_address
from native_e2e_support import HWBKPT, Daemon, Target, native_daemon
from node_support import REPO, NodeScript, node_or_fail

import hwbkpt

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "tests" / "node" / "dap_story.js"
TESTSUPPORT = "@vscode/debugadapter-testsupport"


def function_range(exe: str, name: str) -> tuple[int, int]:
    out = subprocess.run(["nm", "-S", exe], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            start = int(parts[0], 16)
            return start, start + int(parts[1], 16)
    raise AssertionError(f"{name} not in {exe}")


COUNTER_C = REPO / "tests" / "c" / "counter.c"


def source_line(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@pytest.fixture
def daemon(bins: dict[str, str], tmp_path: Path) -> Iterator[Daemon]:
    d = native_daemon(tmp_path)
    yield d
    assert d.stop() == 0, d.log()


def story_env(daemon: Daemon, exe: str, **extra: str) -> dict[str, str]:
    start, end = function_range(exe, "bump")
    return {
        **os.environ,
        "HWBKPT": str(HWBKPT),
        "HWBKPT_SERVER": daemon.address,
        "ADDRESS": hex(nm_address(exe, "counter")),
        "BUMP_START": str(start),
        "BUMP_END": str(end),
        "NAME": "counter",
        "BUMP_LINE": str(source_line(COUNTER_C, "counter = counter + 1;")),
        **extra,
    }


def test_item1_dap_attach_by_name_stop_continue_displaced_restored(
    bins: dict[str, str], daemon: Daemon
) -> None:
    node = node_or_fail(TESTSUPPORT)
    target = Target([bins["counter"]])
    assert target.readline() == "ready"
    assert target.address == nm_address(bins["counter"], "counter")
    spare = nm_address(bins["counter"], "spare")
    env = story_env(daemon, bins["counter"], STORY="attach", PID=str(target.pid))
    script = NodeScript([node, str(SCRIPT)], env)
    try:
        unknown = script.expect("unknown")["description"]
        assert "no symbol 'no_such_variable'" in unknown, unknown
        info = script.expect("info")
        assert info["dataId"] == "sym:counter:0", info
        # Where the broker found it, and its type's size (counter is an unsigned long).
        assert f"counter at {target.address:#x}" in info["description"], info
        assert "8 bytes" in info["description"], info
        script.expect("set")
        target.send("bump\n")  # halts in bump(); "ok" comes after continue
        script.send("bumped")
        stop = script.expect("stopped")
        assert stop["frame"]["instructionPointerReference"].startswith("0x")
        assert stop["frame"]["line"] == source_line(COUNTER_C, "counter = counter + 1;")
        assert target.readline() == "ok 1"
        script.send("resumed")

        script.expect("ready-for-rival")
        with hwbkpt.Client(daemon.address) as client, client.open_session("rival") as rival:
            # Four watches at priority high (75) over the editor's debugger (50): x86 has four
            # debug address registers, so the editor's breakpoint loses its slot.
            for i in range(4):
                rival.watch(spare + 8 * i, pid=target.pid, priority="high")
            script.send("rival-set")
            message = script.expect("displaced")["message"]
            assert "'rival'" in message, message
            assert "priority 75" in message, message
        script.send("rival-gone")
        assert script.expect("restored")["message"].startswith("restored")

        script.expect("ready-for-bump")
        target.send("bump\n")
        script.send("bumped")
        script.expect("done")
        assert target.readline() == "ok 2"
        assert script.wait() == 0, "".join(script.log)
    finally:
        script.kill()
        target.kill()


def test_item2_dap_launch_held_until_configuration_done(
    bins: dict[str, str], daemon: Daemon
) -> None:
    node = node_or_fail(TESTSUPPORT)
    env = story_env(daemon, bins["counter"], STORY="launch", PROGRAM=bins["counter"])
    script = NodeScript([node, str(SCRIPT)], env)
    try:
        assert script.expect("exited")["exitCode"] == 0
        script.expect("done")
        assert script.wait() == 0, "".join(script.log)
    finally:
        script.kill()


def test_item1_dap_notify_hits_are_output_events_with_value_and_old_value(
    bins: dict[str, str], daemon: Daemon
) -> None:
    node = node_or_fail(TESTSUPPORT)
    target = Target([bins["counter"]])
    assert target.readline() == "ready"
    env = story_env(daemon, bins["counter"], STORY="notify", PID=str(target.pid))
    script = NodeScript([node, str(SCRIPT)], env)
    try:
        bp = script.expect("set")["id"]
        for value in (1, 2, 3):  # notify: the thread never stops, "ok" comes at once
            target.send("bump\n")
            assert target.readline() == f"ok {value}"
        script.send("bumped-thrice")
        outputs = script.expect("outputs")["outputs"]
        # The first hit is ignored (hitCondition "> 1"); the others carry value and old value.
        assert len(outputs) == 2, outputs
        for line, (new, old) in zip(outputs, [(2, 1), (3, 2)], strict=True):
            assert line.startswith(f"data breakpoint {bp}: write of {target.address:#x}"), line
            assert f"value {new} ({new:#x}) (was {old} ({old:#x}))" in line, line
        script.expect("done")
        assert script.wait() == 0, "".join(script.log)
    finally:
        script.kill()
        target.kill()
