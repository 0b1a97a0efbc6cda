"""Issue 9, item 1 on the native machine: ``hwbkpt watch`` against a target writing in a
tight loop (tests/c/spinner.c, every word of a 32-byte region in turn).

``--count N`` prints exactly N hits, also when the region is split across slots; SIGINT
and SIGTERM end the watch promptly however fast hits stream, with 130 and 143.
Kernel scope is the case the issue saw; it is refused on this project's VM, and the
user-space target writing as fast as it can is the same race.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_e2e_support import Daemon, Target, native_daemon, until

pytestmark = pytest.mark.e2e

#: How long a stopped watch may take to exit, clean-up included.
PROMPT = 2.0
#: Hits printed before the signal: enough that a backlog has built up behind them.
STREAMING = 2000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    # The ptrace NOTIFY path (mode "ptrace") and perf non-stop (mode "nonstop"). Under
    # --notify bpf/auto the spinner's unbounded hit rate keeps the broker draining the ring,
    # and the removal's confirmation comes later than the CLI's 1 s wait (an open problem,
    # docs/decisions.md).
    d = native_daemon(tmp_path_factory.mktemp("hwbkptd-watch-cli"), "auto", "--notify", "ptrace")
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture
def spinner(bins: dict[str, str]) -> Iterator[Target]:
    target = Target([bins["spinner"]])
    assert target.readline() == "ready"
    yield target
    target.kill()


MODES = {"ptrace": [], "nonstop": ["--nonstop"], "halt": ["--halt"]}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("length", "count"), [(8, 1), (32, 8)], ids=["8B-count1", "32B-count8"])
def test_item1_count_prints_exactly_n_hits_of_a_tight_loop(
    daemon: Daemon, spinner: Target, length: int, count: int, mode: str
) -> None:
    done = daemon.cli(
        "--json",
        "watch",
        "--pid",
        str(spinner.pid),
        hex(spinner.address),
        "--length",
        str(length),
        "--count",
        str(count),
        *MODES[mode],
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    hits = [r for r in records if r["event"] == "hit"]
    assert len(hits) == count, records
    assert [h["hit_count"] for h in hits] == list(range(1, count + 1))
    assert (records[-1]["event"], records[-1]["reason"]) == ("removed", "stop_after")
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert done.stderr == ""
    if length == 32:
        # Split across four slots, and the hits came from more than one of them.
        assert len({h["address"] for h in hits}) > 1, hits


def _skipped_note(stderr: list[str]) -> int:
    text = "".join(stderr)
    found = re.search(r"(\d+) hit\(s\) received after the watch ended were not printed", text)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("mode", ["ptrace", "nonstop"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_item1_a_signal_stops_the_watch_promptly_while_hits_stream(
    daemon: Daemon, spinner: Target, sig: signal.Signals, mode: str
) -> None:
    where = ["--pid", str(spinner.pid), hex(spinner.address), "--length", "32"]
    w = daemon.watch(*where, *MODES[mode])
    until(lambda: w.count(event="hit") >= STREAMING, what=f"{STREAMING} hits printed")

    assert w.interrupt(sig, timeout=PROMPT) == 128 + sig
    last = w.seen[-1]
    assert (last["event"], last.get("reason")) == ("removed", "client"), w.seen[-3:]
    # Every event received is printed, except hits after the signal, which stderr counts.
    seqs = [r["seq"] for r in w.seen]
    assert seqs == sorted(set(seqs))
    assert seqs[-1] + 1 - len(seqs) == _skipped_note(w.stderr), w.stderr
    assert Path(f"/proc/{spinner.pid}").exists()  # the target runs on
