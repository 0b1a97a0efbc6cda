"""How often a ``kill -9`` of the broker kills a target it watches (issue 9 item 4).

Each run starts ``hwbkptd --machine native``, a target (tests/c/writer.c)
writing four variables every INTERVAL microseconds (0: in a tight loop), and a session
with one NOTIFY watch on each (ptrace, perf arming unless told otherwise). Once the
session has seen a few hits, the broker is killed with SIGKILL at a random moment of
the next few milliseconds; the run counts as a death when the target then ends by
SIGTRAP instead of finishing its writes. Run it as root:

    .venv/bin/python tests/e2e_native/kill_rate.py --interval-us 1000 --runs 50

and it prints the deaths out of the runs (``--json`` for one JSON line).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c_programs import build_all
from native_e2e_support import Target, expect_event, native_daemon

__all__ = ["HITS_BEFORE_KILL", "KILL_SPREAD", "WATCHES", "death_rate", "kill_once", "main"]

WATCHES = 4
#: Hits the session sees before the kill: the target is trapping by then.
HITS_BEFORE_KILL = 8
#: The kill lands at a random moment of this many seconds after those hits.
KILL_SPREAD = 0.02
#: How long (seconds) the target runs on untraced after the kill.
_RUN_ON = 0.3


def _writes(interval_us: int) -> int:
    """Iterations that keep the target running past the kill (about _RUN_ON seconds)."""
    if interval_us == 0:
        return 100_000_000  # four stores each: a fraction of a second untraced
    return max(100, int(_RUN_ON * 1e6) // interval_us)


def kill_once(
    bins: dict[str, str], workdir: Path, interval_us: int, rng: random.Random, arming: str = "perf"
) -> int:
    """One run: the target's exit status (0 when it survived, -5 when SIGTRAP killed it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = _writes(interval_us)
    daemon = native_daemon(workdir, arming)
    target = Target([bins["writer"], str(n), str(interval_us), str(WATCHES)])
    try:
        with daemon.client() as client:
            s = client.open_session("doomed")
            for i in range(WATCHES):
                bp = s.watch(target.address + 8 * i, pid=target.pid)
                assert bp.state.value == "installed", bp
            target.send("g")
            for _ in range(HITS_BEFORE_KILL):
                expect_event(s, "hit", 10)
            time.sleep(rng.uniform(0, KILL_SPREAD))
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(10)
        rc, out = target.finish()
        if rc == 0:
            assert out.strip() == f"done {n}", out
        return rc
    finally:
        target.kill()
        daemon.stop()


def death_rate(
    bins: dict[str, str],
    workdir: Path,
    interval_us: int,
    runs: int,
    seed: int = 9,
    arming: str = "perf",
) -> list[int]:
    """The exit status of each run that did not survive (SIGTRAP deaths are -5)."""
    rng = random.Random(seed)
    return [
        rc
        for run in range(runs)
        if (rc := kill_once(bins, workdir / str(run), interval_us, rng, arming)) != 0
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval-us", type=int, default=1000, help="0: a tight loop")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--arming", default="perf", choices=("perf", "debugreg"))
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill-rate-") as tmp:
        bins = build_all(Path(tmp))
        deaths = death_rate(bins, Path(tmp), args.interval_us, args.runs, args.seed, args.arming)
    sigtrap = sum(1 for rc in deaths if rc == -signal.SIGTRAP)
    if args.json:
        print(
            json.dumps(
                {
                    "interval_us": args.interval_us,
                    "runs": args.runs,
                    "arming": args.arming,
                    "sigtrap_deaths": sigtrap,
                    "other_ends": [rc for rc in deaths if rc != -signal.SIGTRAP],
                }
            )
        )
    else:
        other = len(deaths) - sigtrap
        print(
            f"interval {args.interval_us} us, {args.arming} arming: the target died of "
            f"SIGTRAP in {sigtrap} of {args.runs} runs"
            + (f" (and ended otherwise in {other}: {deaths})" if other else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
