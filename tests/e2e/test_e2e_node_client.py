"""Issue 15, item 3 (what it must show, 2): the Node.js client in clients/node plays the
displacement story against a live broker: clients/node/examples/watch.js (four normal
watches, a high-priority fifth, displaced, restored, a hit with value and old value)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Daemon, start_daemon
from node_support import REPO, node_or_fail

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "clients" / "node" / "examples" / "watch.js"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path)
    yield d
    assert d.stop() == 0, d.log()


def _play(daemon: Daemon, script: Path) -> dict[str, dict[str, Any]]:
    """Run a Node story against the broker; its JSON lines by step, in the order printed."""
    node = node_or_fail("@grpc/grpc-js", "@grpc/proto-loader")
    done = subprocess.run(
        [node, str(script)],
        env={**os.environ, "HWBKPT_SERVER": daemon.address},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {rec["step"]: rec for rec in map(json.loads, done.stdout.splitlines())}


def test_item3_node_watch_example_plays_the_displacement_story(daemon: Daemon) -> None:
    steps = _play(daemon, EXAMPLE)
    assert list(steps) == ["machine", "four", "displaced", "restored", "hit"]
    # Enums arrive by name (proto-loader's enums: String).
    assert (steps["machine"]["machine"], steps["machine"]["layout"]) == ("MACHINE_KIND_SIM", "sim")
    assert steps["four"]["states"] == ["BREAKPOINT_STATE_INSTALLED"] * 4
    displaced = steps["displaced"]
    assert displaced["bySession"] == "node-rival"
    assert displaced["byPriority"] == 75
    assert displaced["fifth"] == "BREAKPOINT_STATE_INSTALLED"
    # The displaced watch is the one restored and then hit; ids are decimal strings.
    assert steps["restored"]["breakpoint"] == displaced["breakpoint"]
    hit = steps["hit"]
    assert hit["breakpoint"] == displaced["breakpoint"]
    assert (hit["value"], hit["oldValue"]) == ("42", "0")
    assert isinstance(hit["address"], str)


DECODE_SCRIPT = """
const { Client } = require('./clients/node');
(async () => {
  const client = new Client();
  const session = await client.openSession('node-bad');
  try {
    await session.setBreakpoint({ scope: 'SCOPE_PROCESS', pid: 1, address: '4096', length: 8,
      access: 'ACCESS_WRITE', action: 'ACTION_NOTIFY' });
    console.log(JSON.stringify({ refused: false }));
  } catch (err) {
    console.log(JSON.stringify({ code: err.code, violations: err.violations }));
  } finally {
    await session.close();
    client.close();
  }
})();
"""


def test_item3_node_client_decodes_error_details(daemon: Daemon) -> None:
    node = node_or_fail("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs")
    done = subprocess.run(
        [node, "-e", DECODE_SCRIPT],
        env={**os.environ, "HWBKPT_SERVER": daemon.address},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    # No such process in the simulated machine: the status and its BadRequest detail.
    assert answer["code"] == "NOT_FOUND", answer
    assert [v["field"] for v in answer["violations"]] == ["spec.pid"], answer


RESUME_STORY = REPO / "tests" / "node" / "resume_story.js"


def test_item5_node_client_resumes_a_dropped_stream_without_loss_or_duplicates(
    daemon: Daemon,
) -> None:
    steps = _play(daemon, RESUME_STORY)
    assert list(steps) == ["dropped", "story"], steps
    # The relay cut live links (the channel and its stream) after the fifth hit.
    assert steps["dropped"]["links"] >= 2
    story = steps["story"]
    assert story["reconnects"] >= 1, story
    # Ten writes, ten hits: each value once, in order, and seq numbers without a gap.
    assert [h["value"] for h in story["hits"]] == [str(v) for v in range(1, 11)]
    seqs = [int(h["seq"]) for h in story["hits"]]
    assert seqs == list(range(seqs[0], seqs[0] + 10)), seqs
    # The stream broke after the fifth hit: the resume asked for what came after it.
    assert int(steps["dropped"]["lastSeq"]) == seqs[4]
