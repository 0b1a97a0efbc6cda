"""``hwbkpt dap``: the adapter over stdio (an editor starts it) or TCP (``--port``).

Over TCP every connection is its own adapter with its own broker session, served on its
own thread, as VS Code's ``debugServer`` expects of a long-running adapter.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading

from hwbkpt.dap._adapter import Adapter
from hwbkpt.dap._wire import Wire

__all__ = ["add_dap_parser", "serve_connection", "serve_stdio", "serve_tcp"]


def serve_stdio(server: str | None) -> int:
    Adapter(Wire(sys.stdout.buffer), server).run(sys.stdin.buffer)
    return 0


def serve_connection(conn: socket.socket, server: str | None) -> None:
    with conn, conn.makefile("rb") as reader, conn.makefile("wb") as writer:
        Adapter(Wire(writer), server).run(reader)


def serve_tcp(host: str, port: int, server: str | None) -> int:
    with socket.create_server((host, port)) as listener:
        bound = listener.getsockname()[1]
        # The port actually bound (for --port 0), on stderr: stdout is not the protocol here,
        # but the line is for people and scripts alike.
        print(f"hwbkpt dap: listening on {host}:{bound}", file=sys.stderr, flush=True)
        while True:
            conn, _ = listener.accept()
            threading.Thread(
                target=serve_connection, args=(conn, server), name="hwbkpt-dap-conn", daemon=True
            ).start()


def add_dap_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dap",
        help="a Debug Adapter (DAP) for editors: data breakpoints through the broker",
        description=(
            "Speak the Debug Adapter Protocol on stdin/stdout (an editor starts it), or on "
            "TCP with --port. Data breakpoints become broker requests at priority "
            "'debugger' (50) unless the launch/attach configuration says 'priority'."
        ),
    )
    p.add_argument("--port", type=int, default=None, help="serve DAP on this TCP port")
    p.add_argument("--host", default="127.0.0.1", help="with --port (default 127.0.0.1)")
