"""Issue 9, item 6: every command of README.md's sh blocks runs, and prints what it says.

The lines are read from README.md as they are. In them 1234 (a pid), 0x601040 (an address)
and ``./prog args`` stand for this test's C target: tests/c/writer.c writing its
variable every millisecond, and a copy of it named ``prog`` run as ``./prog 5 1000 nowait``
(five writes). ``hwbkpt`` is this environment's, with $HWBKPT_SERVER naming a native broker
on a temporary socket (a simulated one for ``hwbkpt sim``). Commands that run until Ctrl-C
get SIGINT once they have printed hits. Each ``.venv/bin/hwbkptd`` line starts with its own
arguments on a temporary socket, must answer ``info`` as they say, and stop on SIGTERM.

Exempt: ``make demo`` and ``make test`` are this suite's own entry points (the demo has its
tests in tests/e2e*/test_e2e*_demo.py); the python block is library code, not a command. A
command no rule here knows fails, so a new README command needs its check.

Kernel lines: where the kernel refuses breakpoints on kernel addresses (the broker's own
probe, ``kernel_addresses_refused``) the broker's refusal is what the user must see:
FAILED_PRECONDITION naming the reason, exit 2. Elsewhere they must print their hits.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import HWBKPTD, start_daemon
from native_e2e_support import HWBKPT, REPO, Daemon, Target, native_daemon
from native_support import kernel_addresses_refused

import hwbkpt
from hwbkpt.cli._parser import build_parser
from hwbkptd.daemon.main import build_parser as daemon_parser

pytestmark = pytest.mark.e2e

README = REPO / "README.md"
EXEMPT = {"make demo", "make test"}
#: Hits a Ctrl-C command prints before it gets its SIGINT.
HITS_BEFORE_CTRL_C = 3
#: Upper bound for any one command; a watch that finds nothing fails here.
COMMAND_TIMEOUT = 30.0
PROG_ARGS = ["5", "1000", "nowait"]  # writer.c: five writes, 1 ms apart, without waiting
EVENT_LINE = re.compile(r"^#(\d+)\s+(\S+)\s+bp (\d+)(.*)$")


#: README's section whose sh blocks run as one script (they build on each other's files).
NETWORK_SECTION = "## Running it on a network"


def _sh_lines(text: str) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _network_section() -> str:
    text = README.read_text()
    start = text.index(NETWORK_SECTION)
    end = text.find("\n## ", start + len(NETWORK_SECTION))
    return text[start : end if end >= 0 else len(text)]


def readme_lines() -> list[str]:
    """Every sh line outside the network section (that one runs as a script, below)."""
    return _sh_lines(README.read_text().replace(_network_section(), ""))


NETWORK_LINES = _sh_lines(_network_section())


def commands(line: str) -> list[list[str]]:
    """The line's commands (split at ``;``), each as argv, comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";")
    lex.whitespace_split = True
    lex.commenters = "#"
    out: list[list[str]] = [[]]
    for token in lex:
        if token == ";":
            out.append([])
        else:
            out[-1].append(token)
    return [argv for argv in out if argv]


LINES = readme_lines()


@dataclass
class Examples:
    native: Daemon
    sim: Daemon
    target: Target
    workdir: Path

    def env(self, daemon: Daemon) -> dict[str, str]:
        return {**os.environ, "HWBKPT_SERVER": daemon.address}

    def substitute(self, argv: list[str]) -> list[str]:
        out: list[str] = []
        for token in argv:
            if token == "1234":
                out.append(str(self.target.pid))
            elif token == "0x601040":
                out.append(hex(self.target.address))
            elif token == "args" and out and out[-1] == "./prog":
                out.extend(PROG_ARGS)
            else:
                out.append(token)
        return out


@pytest.fixture(scope="module")
def examples(bins: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Examples]:
    workdir = tmp_path_factory.mktemp("readme")
    shutil.copy(bins["writer"], workdir / "prog")
    native = native_daemon(tmp_path_factory.mktemp("readme-native"))
    sim = start_daemon(tmp_path_factory.mktemp("readme-sim"))
    target = Target([bins["writer"], str(10**12), "1000", "nowait"])
    try:
        yield Examples(native, sim, target, workdir)
    finally:
        target.kill()
        assert native.stop() == 0, native.log()
        assert sim.stop() == 0, sim.log()


# --- running and reading -------------------------------------------------------------------
@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"{shlex.join(self.argv)}\n  exit {self.returncode}\n  stdout: {self.stdout[-3000:]}"
            f"\n  stderr: {self.stderr[-3000:]}"
        )


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> Run:
    try:
        done = subprocess.run(
            [str(HWBKPT), *argv[1:]],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(
            f"{shlex.join(argv)} did not finish in {COMMAND_TIMEOUT}s; printed {err.stdout!r}"
        ) from None
    return Run(argv, done.returncode, done.stdout, done.stderr)


def _run_until_ctrl_c(argv: list[str], env: dict[str, str], cwd: Path, hits: int) -> Run:
    """Start it, wait until it printed ``hits`` hit lines (or its first line when 0), SIGINT."""
    proc = subprocess.Popen(
        [str(HWBKPT), *argv[1:]],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.put(text)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    got: list[str] = []
    try:
        while True:
            try:
                text = lines.get(timeout=COMMAND_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"{shlex.join(argv)}: nothing more after {got}") from None
            if text is None:
                raise AssertionError(f"{shlex.join(argv)} ended early: {got}")
            got.append(text)
            if len([g for g in got if _event_kind(g) == "hit"]) >= hits:
                break
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(COMMAND_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(COMMAND_TIMEOUT)
    while (text := lines.get()) is not None:
        got.append(text)
    assert proc.stderr is not None
    return Run(argv, returncode, "".join(got), proc.stderr.read())


def _event_kind(line: str) -> str:
    if line.startswith("{"):
        return str(json.loads(line).get("event", ""))
    found = EVENT_LINE.match(line)
    return found.group(2) if found else ""


def events(run: Run, as_json: bool) -> list[dict[str, Any]]:
    """The event lines, as JSON records or as {seq, event, breakpoint, text} from text lines."""
    out: list[dict[str, Any]] = []
    for line in run.stdout.splitlines():
        if as_json:
            record = json.loads(line)
            if "seq" in record:
                out.append(record)
        elif found := EVENT_LINE.match(line):
            seq, kind, bp, text = found.groups()
            out.append({"seq": int(seq), "event": kind, "breakpoint": int(bp), "text": text})
        elif line.startswith("        0x") and out and out[-1]["event"] == "hit":
            out[-1].setdefault("frames", []).append(line.strip())
    return out


HIT_KEYS = {"pid", "tid", "address", "ip", "value", "old_value", "hit_count", "access", "time"}


def _check_watch_output(run: Run, as_json: bool, count: int, end: str) -> list[dict[str, Any]]:
    evs = events(run, as_json)
    assert evs, run.describe()
    assert (evs[0]["event"], evs[0]["seq"]) == ("state", 0), run.describe()
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(set(seqs)), run.describe()
    if end == "stop_after":  # nothing is skipped when the broker counts
        assert seqs == list(range(len(seqs))), run.describe()
    hits = [e for e in evs if e["event"] == "hit"]
    if count:
        assert len(hits) == count, run.describe()
    assert hits, run.describe()
    if as_json:
        assert all(h.keys() >= HIT_KEYS for h in hits), run.describe()
    last = evs[-1]
    assert last["event"] == "removed", run.describe()
    assert (last["reason"] if as_json else last["text"].strip()) in (end, f"({end})")
    return hits


# --- the rules ------------------------------------------------------------------------------
def check_print_config(argv: list[str]) -> None:
    """``--print-config`` prints every setting with its source and starts nothing."""
    done = subprocess.run(
        [str(HWBKPTD), *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    keys = {line.lstrip("# ").split(" ", 1)[0] for line in lines}
    assert {"listen", "machine", "lease", "metrics"} <= keys, lines
    assert all(re.search(r"  # from (default|flag|file \S+)$", line) for line in lines), lines


def check_daemon(argv: list[str], tmp: Path) -> None:
    if "--print-config" in argv:
        check_print_config(argv)
        return
    parsed = daemon_parser().parse_args(argv[1:])
    d = start_daemon(tmp, machine="auto", extra=tuple(argv[1:]))
    try:
        with hwbkpt.Client(d.address) as client:
            info = client.describe()
    finally:
        assert d.stop() == 0, d.log()
    machine = parsed.machine
    assert info.machine == (machine if machine.startswith("sim") else "native"), (argv, info)
    assert info.arch == ("arm64" if "arm64" in machine else "x86_64"), (argv, info)
    if parsed.arming != "auto":
        assert info.arming == parsed.arming, (argv, info)


def check_watch(ex: Examples, argv: list[str], args: Any, env: dict[str, str]) -> None:
    pid, address = ex.target.pid, ex.target.address
    if args.kernel:
        refused = kernel_addresses_refused()
        run = _run(argv, env, ex.workdir)
        if refused:
            assert run.returncode == 2, run.describe()
            assert run.stderr.startswith("error: FAILED_PRECONDITION: "), run.describe()
            assert refused in run.stderr, run.describe()
            return
        assert run.returncode == 0, run.describe()
        hits = _check_watch_output(run, args.json, args.count, "stop_after")
        if args.call_chain:
            assert all(h.get("frames") or h.get("call_chain") for h in hits), run.describe()
        return
    if args.count:
        run = _run(argv, env, ex.workdir)
        assert run.returncode == 0, run.describe()
        end = "stop_after"
    else:
        run = _run_until_ctrl_c(argv, env, ex.workdir, HITS_BEFORE_CTRL_C)
        assert run.returncode == 130, run.describe()
        end = "client"
    hits = _check_watch_output(run, args.json, args.count, end)
    for h in hits:
        if args.json:
            assert (h["pid"], h["address"]) == (pid, address), run.describe()
        else:
            assert f"tid {pid} " in h["text"], run.describe()
            assert f" {address:#x} " in h["text"], run.describe()


def check_slots(ex: Examples, argv: list[str], env: dict[str, str]) -> None:
    # Something to show: this test's own session holds a slot in the target meanwhile.
    with hwbkpt.Client(ex.native.address) as c, c.open_session("readme") as s:
        bp = s.watch(ex.target.address, pid=ex.target.pid)
        run = _run(argv, env, ex.workdir)
    assert run.returncode == 0, run.describe()
    lines = run.stdout.splitlines()
    if build_parser().parse_args(argv[1:]).json:
        records = [json.loads(line) for line in lines]
        held = [
            (r["pid"], s["chunk"]["address"], h["session"], h["breakpoint"])
            for r in records
            if "slots" in r
            for s in r["slots"]
            for h in s["holders"]
        ]
        assert (ex.target.pid, ex.target.address, "readme", bp.id) in held, run.describe()
        return
    # One table row per slot: server, pid, tid, generation, slot, what it watches, holders.
    pid = ex.target.pid
    held = (
        rf"^│ {re.escape(ex.native.address)}\s+│ {pid}\s+│ {pid}\s+│ \d+\s+│ dr\d\s+"
        rf"│ {ex.target.address:#x}/8 write\s+│ readme#{bp.id}\(25\)\s+│$"
    )
    assert any(re.match(held, line) for line in lines), run.describe()


def check_launch(ex: Examples, argv: list[str], env: dict[str, str]) -> None:
    run = _run(argv, env, ex.workdir)
    assert run.returncode == 0, run.describe()
    lines = run.stdout.splitlines()
    found = re.match(r"^launched pid (\d+): (.*)$", lines[0])
    assert found, run.describe()
    assert found.group(2) == shlex.join(["./prog", *PROG_ARGS]), run.describe()
    evs = events(run, as_json=False)
    hits = [e for e in evs if e["event"] == "hit"]
    assert evs[0]["event"] == "state", run.describe()
    assert len(hits) == int(PROG_ARGS[0]), run.describe()
    assert evs[-1]["event"] == "target_exited", run.describe()
    assert f"pid {found.group(1)} tid 0 exited with 0" in evs[-1]["text"], run.describe()


def check_attach(ex: Examples, argv: list[str], env: dict[str, str]) -> None:
    run = _run_until_ctrl_c(argv, env, ex.workdir, hits=0)
    assert run.returncode == 130, run.describe()
    pid = ex.target.pid
    lines = run.stdout.splitlines()
    assert lines[0] == f"attached pid {pid}: threads {pid}", run.describe()
    assert lines[-1] == f"detached pid {pid}", run.describe()


def check_info(ex: Examples, argv: list[str], env: dict[str, str]) -> None:
    run = _run(argv, env, ex.workdir)
    assert run.returncode == 0, run.describe()
    lines = run.stdout.splitlines()
    assert lines[0].startswith("machine     native (x86_64)"), run.describe()
    assert {"pools", "mechanisms", "notes"} <= set(lines), run.describe()


def check_sim(ex: Examples, argv: list[str], args: Any) -> None:
    run = _run(argv, ex.env(ex.sim), ex.workdir)
    assert run.returncode == 0, run.describe()
    if args.sim_command == "spawn":
        assert run.stdout.strip().isdigit(), run.describe()
    else:
        assert run.stdout == "no hit\n", run.describe()  # nothing watches the new process


def check_cli(ex: Examples, argv: list[str]) -> None:
    args = build_parser().parse_args(argv[1:])
    env = ex.env(ex.native)
    if args.command == "sim":
        check_sim(ex, argv, args)
    elif args.command == "watch":
        check_watch(ex, argv, args, env)
    elif args.command == "slots":
        check_slots(ex, argv, env)
    elif args.command == "launch":
        check_launch(ex, argv, env)
    elif args.command == "attach":
        check_attach(ex, argv, env)
    elif args.command == "info":
        check_info(ex, argv, env)
    elif args.command == "health":
        run = _run(argv, env, ex.workdir)
        assert run.returncode == 0, run.describe()
        assert run.stdout == f"{ex.native.address} SERVING\n", run.describe()
    else:
        pytest.fail(f"README runs `hwbkpt {args.command}`, which this test has no check for")


# --- the tests ------------------------------------------------------------------------------
def test_item6_the_readme_examples_are_found() -> None:
    """The sh blocks are read: the daemon, CLI and make lines are all there."""
    firsts = {argv[0] for line in LINES for argv in commands(line)}
    assert {".venv/bin/hwbkptd", "hwbkpt", "make"} <= firsts, LINES
    assert any("--kernel" in line for line in LINES)


@pytest.mark.parametrize("line", LINES)
def test_item6_readme_command_runs_as_documented(
    line: str, examples: Examples, tmp_path: Path
) -> None:
    for argv in commands(line):
        program = argv[0]
        if program == "make":
            assert shlex.join(argv) in EXEMPT, f"no rule for README command {line!r}"
        elif program == ".venv/bin/hwbkptd":
            assert Path(HWBKPTD).exists()
            check_daemon(argv, tmp_path)
        elif program == "hwbkpt":
            check_cli(examples, examples.substitute(argv))
        else:
            pytest.fail(f"no rule for README command {line!r}")


# --- the network section (issue 12, item 8) ----------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_item8_the_network_section_runs_as_written(tmp_path: Path) -> None:
    """Its lines run in order as one bash script in an empty directory, the brokers on free
    ports instead of 50051 and 50052: a CA, certificates and a token are made, the policy
    checks, and clients reach an mTLS broker and a token broker over TLS."""
    assert any(line.startswith("openssl ") for line in NETWORK_LINES)
    ports = {"50051": str(_free_port()), "50052": str(_free_port())}
    lines = []
    for line in NETWORK_LINES:
        for old, new in ports.items():
            line = line.replace(old, new)
        lines.append(line.replace(".venv/bin/hwbkptd", str(HWBKPTD)))
    # set -e: any command failing (a client refused, a broker not starting) fails the run.
    script = "set -e\n" + "\n".join(lines) + "\nwait\n"
    env = {**os.environ, "PATH": f"{Path(HWBKPT).parent}:{os.environ['PATH']}"}
    env.pop("HWBKPT_SERVER", None)
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    out = done.stdout
    assert "policy.toml: valid, 2 identities" in out, out
    assert "alice: targets any process; kernel no; priority <= 50" in out, out
    assert "machine     native (x86_64)" in out, out  # info over mTLS
    assert (tmp_path / "tokens").read_text().startswith("ci ")
    assert (tmp_path / "ci.token").read_text() not in (tmp_path / "tokens").read_text()
