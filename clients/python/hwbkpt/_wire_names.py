"""The broker's fixed sets (enums on the wire) as the readable words the models use.

The wire says ``REMOVED_REASON_TARGET_EXITED``; a model says ``"target_exited"``, the
word the broker's logs and the CLI print. A number this client does not know (a newer
broker) becomes the enum's number as text rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping

from hwbkpt.v1 import broker_pb2 as pb

__all__ = [
    "PRIORITY_PRESETS",
    "arming_word",
    "machine_word",
    "mechanism_word",
    "removed_word",
]

_REMOVED: dict[int, str] = {
    pb.REMOVED_REASON_CLIENT: "client",
    pb.REMOVED_REASON_LEASE: "lease",
    pb.REMOVED_REASON_STOP_AFTER: "stop_after",
    pb.REMOVED_REASON_TARGET_EXITED: "target_exited",
    pb.REMOVED_REASON_TARGET_EXEC: "target_exec",
    pb.REMOVED_REASON_SESSION_CLOSED: "session_closed",
    pb.REMOVED_REASON_SHUTDOWN: "shutdown",
    pb.REMOVED_REASON_DETACHED: "detached",
    pb.REMOVED_REASON_UNRESOLVED: "unresolved",
    pb.REMOVED_REASON_POLICY: "policy",
}
_MACHINES: dict[int, str] = {pb.MACHINE_KIND_SIM: "sim", pb.MACHINE_KIND_NATIVE: "native"}
_ARMINGS: dict[int, str] = {
    pb.ARMING_UNSPECIFIED: "",
    pb.ARMING_PERF: "perf",
    pb.ARMING_DEBUGREG: "debugreg",
    pb.ARMING_SIMULATED: "simulated",
}
_MECHANISMS: dict[int, str] = {
    pb.MECHANISM_NAME_PTRACE: "ptrace",
    pb.MECHANISM_NAME_PERF_KERNEL: "perf-kernel",
    pb.MECHANISM_NAME_PERF_NONSTOP: "perf-nonstop",
    pb.MECHANISM_NAME_BPF: "bpf",
    pb.MECHANISM_NAME_SIM: "sim",
    pb.MECHANISM_NAME_NATIVE: "native",
}

#: Named priorities (the proto's PriorityPreset: ``low`` is PRIORITY_PRESET_LOW = 10, ...);
#: any integer 0..100 works too.
PRIORITY_PRESETS: Mapping[str, int] = {
    name.removeprefix("PRIORITY_PRESET_").lower(): number
    for name, number in pb.PriorityPreset.items()
    if number != pb.PRIORITY_PRESET_UNSPECIFIED
}


def _word(table: Mapping[int, str], value: int) -> str:
    return table.get(value, str(value))


def removed_word(value: int) -> str:
    return _word(_REMOVED, value)


def machine_word(value: int) -> str:
    return _word(_MACHINES, value)


def arming_word(value: int) -> str:
    return _word(_ARMINGS, value)


def mechanism_word(value: int) -> str:
    return _word(_MECHANISMS, value)
