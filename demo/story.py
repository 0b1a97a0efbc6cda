"""The demo's story: an IDE and a tracer compete for one thread's four debug registers.

Only broker calls and client processes here; accesses come from a ``Target``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import hwbkpt
from demo.clients import ClientProcess, agent, cli_watch
from demo.daemon import Broker, DemoError
from demo.target import NativeTarget, SimTarget, Target, compile_target

__all__ = ["main", "run"]

#: Seconds to listen for a hit that must not come.
QUIET = 0.4


def say(who: str, text: str) -> None:
    print(f"{who:<7} {text}", flush=True)


def _slot_lines(client: hwbkpt.Client, target: Target) -> list[str]:
    names = {addr: name for name, addr in target.variables.items()}
    lines = []
    for thread in client.slot_map(target.pid).threads:
        head = f"thread {thread.tid}"
        for slot in thread.slots:
            what = "free"
            if slot.chunk is not None:
                c = slot.chunk
                var = names.get(c.address, hex(c.address))
                if c.length != 8:
                    var += f"[{c.length} bytes]"
                holders = " ".join(
                    f"{h.session_name}#{h.breakpoint_id}({h.priority})" for h in slot.holders
                )
                what = f"{var:<16} {holders}"
            lines.append(f"{head:<12} {slot.pool}{slot.index}  {what}")
            head = ""
    return lines


def show_slots(client: hwbkpt.Client, target: Target) -> None:
    for i, line in enumerate(_slot_lines(client, target)):
        say("slots" if i == 0 else "", line)


def run(broker: Broker, make_target: Callable[[str], Target]) -> None:
    client = hwbkpt.Client(broker.address)
    target = make_target(broker.address)
    started: list[ClientProcess] = []
    try:
        _story(client, broker, target, started)
    finally:
        for proc in started:
            proc.stop()
        target.close()
        client.close()


def _story(
    client: hwbkpt.Client, broker: Broker, target: Target, started: list[ClientProcess]
) -> None:
    info = client.describe()
    print("hwbkpt demo: an IDE and a tracer share one thread's debug registers\n")
    pools = ", ".join(f'"{p.name}" of {p.slots} slots' for p in info.pools)
    arming = f", {info.arming} arming" if info.machine == "native" else ""
    say("broker", f"hwbkptd --machine {info.machine} ({info.arch}: {pools}{arming})")
    say("", f"on {broker.address}")
    names = list(target.variables)
    say(
        "target",
        f"{target.describe()}: " + ", ".join(f"{n}@{a:#x}" for n, a in target.variables.items()),
    )
    print()

    # 1. The IDE (normal priority) watches four variables: all four slots.
    ide = agent("ide", broker.address, target.pid, list(target.variables.values()), "normal")
    started.append(ide)
    ide_ids = {name: ide.expect()["set"] for name in names}  # one "set" line per watch
    say("ide", f"priority normal (25): watches {', '.join(names)}: all installed")
    show_slots(client, target)
    print()

    # 2. The tracer (high priority) wants the low half of the last variable.
    victim = names[-1]
    tracer = cli_watch(
        "tracer",
        broker.address,
        "--pid",
        str(target.pid),
        hex(target.variables[victim]),
        "--length",
        "4",
        "--priority",
        "high",
    )
    started.append(tracer)
    state = tracer.expect(event="state", seq=0)
    tracer_id = state["breakpoint"]
    say("tracer", f"priority high (75): watches {victim}[4 bytes]: {state['state']}")
    moved = ide.expect(event="displaced")
    say(
        "ide",
        f"<- DISPLACED: its watch on {victim} (#{moved['breakpoint']}) by "
        f"{moved['by_session']}#{tracer_id}, priority {moved['by_priority']}, "
        f"in thread {','.join(map(str, moved['tids']))}",
    )
    show_slots(client, target)
    print()

    # 3. The program writes the displaced variable: only the slot's holder hears it.
    target.write(victim, 7, size=4)
    hit = tracer.expect(event="hit")
    say("write", f"{victim} = 7 (4 bytes)")
    say("tracer", f"<- HIT {victim}: value {hit['value']}, old {hit['old_value']}")
    if ide.quiet(QUIET, event="hit"):
        raise DemoError("ide got a hit on a displaced watch")
    say("ide", "   (no hit: its watch is displaced)")
    print()

    # 4. The tracer is done: its slot goes back to the IDE.
    tracer.stop_expecting(130)  # hwbkpt's status after Ctrl-C and its clean-up
    tracer.expect(event="removed")
    say("tracer", "removes its watch and exits")
    back = ide.expect(event="restored")
    say(
        "ide",
        f"<- RESTORED: its watch on {victim} (#{back['breakpoint']}) "
        f"in thread {','.join(map(str, back['tids']))}",
    )

    # 5. And the IDE sees the next write, with the value and the one before it.
    target.write(victim, 42)
    hit = ide.expect(event="hit", breakpoint=ide_ids[victim])
    say("write", f"{victim} = 42")
    say("ide", f"<- HIT {victim}: value {hit['value']}, old {hit['old_value']}")
    print()
    ide.stop_expecting(0)


def native_blocker() -> str:
    """Why the demo cannot run on a real process here ("" when it can)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        here = f"{sys.platform} {platform.machine()}"
        return f"the native machine needs Linux on x86_64, this is {here}"
    if os.geteuid() != 0:
        return "the native machine needs root (the broker traces the target with ptrace)"
    if shutil.which("gcc") is None:
        return "gcc is needed to build the target program"
    return ""


def _choose(machine: str) -> tuple[str, str]:
    """(the broker's --machine, why) for the demo's --machine."""
    if machine != "auto":
        return machine, f"--machine {machine}"
    why = native_blocker()
    if why:
        return "sim", f"{why}: the story runs on the simulated machine"
    return "native", "a real process under the native machine"


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument(
        "--machine",
        default="auto",
        help="auto (native when root on x86_64 Linux, else sim), native, or a sim layout",
    )
    parser.add_argument("--arming", choices=("auto", "perf", "debugreg"), default="auto")
    args = parser.parse_args(argv)
    machine, why = _choose(args.machine)
    if machine != "native" and not machine.startswith("sim"):
        parser.error(f"--machine {args.machine}: use auto, native or a sim layout")
    print(f"demo: {why}")
    with tempfile.TemporaryDirectory(prefix="hwbkpt-demo-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir, machine=machine, arming=args.arming)
        try:
            make_target: Callable[[str], Target] = SimTarget
            if machine == "native":
                exe = compile_target(workdir)
                make_target = lambda _address: NativeTarget(exe)  # noqa: E731
            broker.start()
            run(broker, make_target)
        except (DemoError, hwbkpt.HwbkptError) as err:
            print(f"demo failed: {err}", file=sys.stderr)
            print(broker.log_tail(), file=sys.stderr)
            with contextlib.suppress(Exception):
                broker.stop()
            return 1
        rc = broker.stop()
        say("broker", f"SIGTERM: exit {rc}")
        return 0 if rc == 0 else 1
