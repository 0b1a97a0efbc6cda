"""The ptrace mechanism: real breakpoints in user threads on Linux x86_64.

``PtraceMechanism`` (mechanism.py) implements ``hwbkptd.core.mechanism.Mechanism``;
one tracer thread (tracer.py) makes every ptrace call: on the table of tracees
(table.py, state.py) it answers the stops (stops.py: the trap path, with
memory.py) and runs the commands (commands.py, launch.py), and tells the event
loop in typed messages (messages.py), delivered as pacing.py decides; slots
are armed with perf sigtrap events (arming_perf.py) or debug registers
(arming_debugreg.py). tests/native/ptrace/trap_rate.py measures the trap path
against the C reference loop (bench/ptrace_ref.c).
"""

from __future__ import annotations

from hwbkptd.arch.ptrace.mechanism import ARMINGS, PtraceMechanism, ptrace_available

__all__ = ["ARMINGS", "PtraceMechanism", "ptrace_available"]
