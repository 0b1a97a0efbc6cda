"""The perf helper: kernel-scope breakpoints through perf_event_open (DESIGN section 4).

Modules: ``ring`` (the memory-mapped sample ring and its record format),
``kallsyms`` (kernel symbols), ``cpus`` (online CPUs and hotplug uevents),
``caps`` (what this kernel and process allow), ``percpu`` (one sample ring per
CPU and the breakpoint events redirected into it), ``delivery`` (samples to
HitReports, by generation) and ``kernel_mechanism`` (the Mechanism for the CPU
context table).
"""

from __future__ import annotations

__all__: list[str] = []
