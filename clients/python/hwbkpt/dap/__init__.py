"""``hwbkpt dap``: a Debug Adapter Protocol server whose data breakpoints are broker requests.

Editors that speak DAP (VS Code, nvim-dap, Emacs dap-mode, Zed, Helix) get data breakpoints
that share the machine's debug registers with every other broker client: a breakpoint
another session displaces turns unverified, naming who took the slot, and verified again
when the slot comes back. Built on the client library only (``hwbkpt.Client``).
"""

from __future__ import annotations

from hwbkpt.dap._adapter import CAPABILITIES, Adapter
from hwbkpt.dap._serve import add_dap_parser, serve_connection, serve_stdio, serve_tcp
from hwbkpt.dap._wire import Wire, read_message

__all__ = [
    "CAPABILITIES",
    "Adapter",
    "Wire",
    "add_dap_parser",
    "read_message",
    "serve_connection",
    "serve_stdio",
    "serve_tcp",
]
