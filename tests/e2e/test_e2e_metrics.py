"""Issue 14, item 2: a scrape of a live broker during a multi-client run shows the counts the
clients' event streams saw: hits per session, displacements and restores, sessions, requests
by state, slots used, traced threads and processes, and one latency sample per hit."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import HWBKPTD, Daemon, expect_event, quiet_events, start_daemon
from prometheus_client.parser import text_string_to_metric_families

import hwbkpt

pytestmark = pytest.mark.e2e

VAR = 0x601000
OTHER = 0x602000

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    d = start_daemon(tmp_path, machine="sim:dr=2", extra=("--metrics", "tcp:127.0.0.1:0"))
    try:
        (line,) = [json.loads(x) for x in d.log().splitlines() if '"metrics"' in x]
        assert re.fullmatch(r"tcp:127\.0\.0\.1:\d+", line["metrics"]), line
        yield d, "http://" + line["metrics"].removeprefix("tcp:") + "/metrics"
    finally:
        assert d.stop() == 0, d.log()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def per_session(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[str, float]:
    return {dict(labels)["session"]: v for (n, labels), v in samples.items() if n == name}


def test_item2_scrape_matches_the_event_streams(metered: tuple[Daemon, str]) -> None:
    d, url = metered
    empty = scrape(url)
    assert empty[("hwbkpt_sessions", ())] == 0
    assert empty[("hwbkpt_slots_used", (("pool", "dr"),))] == 0
    with d.client() as c:
        proc = c.sim_spawn(threads=2)
        ide, tracer, agent = (c.open_session(n) for n in ("ide", "tracer", "agent"))
        seen: dict[str, list[hwbkpt.Event]] = {"ide": [], "tracer": [], "agent": []}
        sessions = {"ide": ide, "tracer": tracer, "agent": agent}
        ide.watch(VAR, pid=proc.pid, priority=25)
        tracer.watch(OTHER, pid=proc.pid, priority=50)
        # The sim has two slots: the agent's high request displaces the ide's weaker one.
        agent_bp = agent.watch(VAR + 8, pid=proc.pid, priority=75)
        expect_event(ide, "displaced", seen=seen["ide"])
        writes = {"ide": 0, "tracer": 7, "agent": 5}
        for _ in range(writes["tracer"]):
            c.sim_touch(proc.pid, OTHER, value=1, tid=proc.tids[1])
        for _ in range(writes["agent"]):
            c.sim_touch(proc.pid, VAR + 8, value=2)
        c.sim_touch(proc.pid, VAR, value=3)  # the ide's request is displaced: no hit
        agent.remove(agent_bp.id)
        expect_event(ide, "restored", seen=seen["ide"])
        for _ in range(3):
            c.sim_touch(proc.pid, VAR, value=4)
        writes["ide"] = 3
        for name, s in sessions.items():
            while len([e for e in seen[name] if e.kind == "hit"]) < writes[name]:
                seen[name].append(expect_event(s, "hit"))
            seen[name].extend(quiet_events(s, 0.3))

        # Mid-run: every session still open, the ide and tracer requests installed.
        samples = scrape(url)
        kinds = {name: Counter(e.kind for e in evs) for name, evs in seen.items()}
        hits = per_session(samples, "hwbkpt_hits_total")
        assert hits == {name: kinds[name]["hit"] for name in sessions if kinds[name]["hit"]}
        assert hits == {"ide": 3, "tracer": 7, "agent": 5}
        assert per_session(samples, "hwbkpt_displacements_total") == {"ide": 1}
        assert per_session(samples, "hwbkpt_restores_total") == {"ide": 1}
        assert kinds["ide"]["displaced"] == kinds["ide"]["restored"] == 1
        dropped = per_session(samples, "hwbkpt_hits_dropped_total")
        assert sum(dropped.values()) == sum(k["hits_dropped"] for k in kinds.values()) == 0
        assert samples[("hwbkpt_sessions", ())] == 3
        states = Counter(bp.state.value for s in (ide, tracer) for bp in s.list())
        for state in ("installed", "partial", "pending"):
            assert samples[("hwbkpt_requests", (("state", state),))] == states[state], state
        assert states["installed"] == 2
        assert samples[("hwbkpt_traced_threads", ())] == 2
        assert samples[("hwbkpt_attached_processes", ())] == 1
        held = sum(
            1 for t in c.slot_map().threads for s in t.slots if s.chunk is not None or s.external
        )
        assert samples[("hwbkpt_slots_used", (("pool", "dr"),))] == held == 4  # 2 per thread
        assert samples[("hwbkpt_trap_to_client_seconds_count", ())] == 15
        assert samples[("hwbkpt_trap_to_client_seconds_bucket", (("le", "+Inf"),))] == 15
        assert 0 < samples[("hwbkpt_trap_to_client_seconds_sum", ())] < 15 * 5.0
        for s in sessions.values():
            s.close()
    after = scrape(url)
    assert after[("hwbkpt_sessions", ())] == 0
    assert after[("hwbkpt_requests", (("state", "installed"),))] == 0
    assert per_session(after, "hwbkpt_hits_total") == {"ide": 3, "tracer": 7, "agent": 5}


def test_item2_metrics_address_is_checked(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(HWBKPTD), "--listen", f"unix:{tmp_path}/s", "--machine", "sim", "--metrics", "9090"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--metrics '9090': expected tcp:HOST:PORT" in done.stderr, done.stderr
