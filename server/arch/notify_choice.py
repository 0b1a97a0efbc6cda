"""Which mechanism serves NOTIFY requests (``hwbkptd --notify``), and why.

- ``bpf``: the BPF hit program on the non-stop events (exact values, no stop),
  where a probe program loads and links here (CAP_BPF and CAP_PERFMON);
- ``sample``: the perf non-stop mechanism (no stop, values read late);
- ``ptrace``: the thread stops at each hit while the tracer reads the value.

``auto`` takes ``bpf`` where the probe passes, else ``ptrace``. Non-stop requests go
to the chosen non-stop mechanism either way (BPF when available: exact values).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwbkptd.arch.perf.caps import PerfCaps
from hwbkptd.arch.perf.nonstop import NonstopMechanism
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument

__all__ = ["NOTIFY_CHOICES", "NotifyChoice", "choose_notify"]

NOTIFY_CHOICES = ("auto", "bpf", "ptrace", "sample")


@dataclass(frozen=True, slots=True)
class NotifyChoice:
    name: str
    reason: str
    caps: PerfCaps
    bpf: bool

    def build(self) -> NonstopMechanism:
        if self.bpf:
            from hwbkptd.arch.bpf.mechanism import BpfNotifyMechanism

            return BpfNotifyMechanism(caps=self.caps)
        return NonstopMechanism(caps=self.caps)


def choose_notify(notify: str, caps: PerfCaps) -> NotifyChoice:
    if notify not in NOTIFY_CHOICES:
        raise InvalidArgument("notify", f"use one of {', '.join(NOTIFY_CHOICES)}, not {notify!r}")
    if notify in ("ptrace", "sample"):
        return NotifyChoice(notify, "as asked", caps, bpf=False)
    from hwbkptd.arch.bpf.pipe import probe_bpf

    ok, why = probe_bpf()
    if ok:
        return NotifyChoice(
            "bpf", f"{'as asked' if notify == 'bpf' else 'auto'}: {why}", caps, True
        )
    if notify == "bpf":
        raise FailedPrecondition(f"--notify bpf: BPF unavailable here: {why}")
    return NotifyChoice("ptrace", f"auto: BPF unavailable ({why})", caps, bpf=False)
