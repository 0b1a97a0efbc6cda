"""``python -m demo``: two debuggers share one thread's debug registers through hwbkpt.

The story (``demo.story``) only talks to the broker and to client processes; how accesses
happen is the target's business (``demo.target``): today a simulated process, later a real
C program under ``--machine native``.
"""

from __future__ import annotations

__all__: list[str] = []
