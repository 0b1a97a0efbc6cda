"""``serve``: a signal sent during the start, or as soon as the ready file exists, stops the
broker cleanly (its handlers are in place before the start), and a SIGHUP sent during the
start reloads once the broker runs. Each case runs in a child process, since a signal
with no handler would kill whoever receives it; the start is a stand-in that sends the
signal itself, so the timing is the worst one, every time."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from hwbkptd.api import server

    SIGNALS = [getattr(signal, name) for name in sys.argv[1:]]

    class Running:
        async def reload(self):
            print("reloaded", flush=True)
            return True

        async def stop(self, grace=None):
            print("stopped", flush=True)

    async def start_server(config, machine=None):
        for sig in SIGNALS:
            os.kill(os.getpid(), sig)
            await asyncio.sleep(0)  # the loop runs the handler before the start ends
        print("started", flush=True)
        if signal.SIGTERM not in SIGNALS:
            asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)
        return Running()

    server.start_server = start_server
    asyncio.run(server.serve(server.ServerConfig(listen=("unix:/nonexistent",))))
    print("returned", flush=True)
    """
)


def _run(*signals: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, *signals],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_sigterm_during_the_start_stops_cleanly_after_it() -> None:
    run = _run("SIGTERM")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["started", "stopped", "returned"]


def test_sigint_during_the_start_stops_cleanly_after_it() -> None:
    run = _run("SIGINT")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["started", "stopped", "returned"]


def test_sighup_during_the_start_reloads_once_running() -> None:
    run = _run("SIGHUP")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["started", "reloaded", "stopped", "returned"]
