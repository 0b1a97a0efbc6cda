"""Where the broker listens: ``unix:PATH``, ``tcp:HOST:PORT`` or ``HOST:PORT``."""

from __future__ import annotations

import os

__all__ = ["DEFAULT_ADDRESS", "ENV_VAR", "default_address", "grpc_target"]

#: The broker's default listener (DESIGN section 7).
DEFAULT_ADDRESS = "unix:/run/hwbkpt/hwbkpt.sock"
#: The environment variable that overrides the default address.
ENV_VAR = "HWBKPT_SERVER"


def default_address() -> str:
    """``$HWBKPT_SERVER`` when set and not empty, else the default Unix socket."""
    return os.environ.get(ENV_VAR) or DEFAULT_ADDRESS


def grpc_target(address: str | None = None) -> str:
    """Turn a user-facing address into a gRPC channel target.

    ``None`` means :func:`default_address`. Raises ``ValueError`` naming what is wrong.
    """
    addr = (address if address is not None else default_address()).strip()
    if not addr:
        raise ValueError("empty server address")
    if addr.startswith("unix:"):
        path = addr[len("unix:") :]
        # gRPC reads "unix:///abs" and "unix:rel"; keep the user's spelling when it is already one.
        if path.startswith("//"):
            return addr
        if not path:
            raise ValueError(f"server address {address!r}: unix: needs a socket path")
        return f"unix:{path}"
    if addr.startswith("tcp:"):
        addr = addr[len("tcp:") :]
    return _host_port(addr, original=address or addr)


def _host_port(addr: str, *, original: str) -> str:
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(
            f"server address {original!r}: expected unix:PATH, tcp:HOST:PORT or HOST:PORT"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"server address {original!r}: port {port!r} is not 1..65535")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"server address {original!r}: unbalanced brackets around the host")
    return f"{host}:{port}"
