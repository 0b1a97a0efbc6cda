"""Where the daemon listens, and the file-system gate around its Unix socket (DESIGN section 7).

grpcio cannot tell the server a Unix peer's uid, so the socket's permissions are
the only local access control: the socket lives in a root-owned directory of
mode 0750 whose group is the operators' group, and the socket itself is 0660.
Plain TCP carries no identity at all and is refused except on loopback with an
explicit flag (TLS comes with the security work).
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from hwbkptd.api.socket_dir import UnsafePath, secure_directory

__all__ = [
    "DEFAULT_LISTEN",
    "DIR_MODE",
    "SOCKET_MODE",
    "ConfigError",
    "Listener",
    "finish_unix_socket",
    "parse_listener",
    "prepare_unix_socket",
    "resolve_group",
    "socket_umask",
]

DEFAULT_LISTEN = "unix:/run/hwbkpt/hwbkpt.sock"
DIR_MODE = 0o750
SOCKET_MODE = 0o660
#: sun_path is 108 bytes including the terminating NUL.
_MAX_UNIX_PATH = 107


class ConfigError(Exception):
    """The daemon cannot start as configured; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Listener:
    kind: str  # "unix", "tcp" (plain, loopback only) or "tls"
    #: The path of a Unix socket, or the host of a TCP listener.
    host_or_path: str
    port: int = 0

    @property
    def grpc_address(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.host_or_path}"
        return f"{_bracket(self.host_or_path)}:{self.port}"

    def bound(self, port: int) -> str:
        """How the daemon reports the address once bound (the real port for port 0)."""
        if self.kind == "unix":
            return f"unix:{self.host_or_path}"
        return f"tcp:{_bracket(self.host_or_path)}:{port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listener(text: str, *, insecure_loopback_tcp: bool, tls: bool = False) -> Listener:
    """Parse ``unix:PATH`` or ``tcp:HOST:PORT``; refuse what would expose the broker.

    With ``tls`` every TCP listener is a TLS one (kind ``tls``), on any address."""
    scheme, colon, rest = text.partition(":")
    if not colon or scheme not in ("unix", "tcp"):
        raise ConfigError(f"--listen {text!r}: expected unix:PATH or tcp:HOST:PORT")
    if scheme == "unix":
        if not rest:
            raise ConfigError(f"--listen {text!r}: the socket path is empty")
        path = os.path.abspath(rest)
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise ConfigError(
                f"--listen {text!r}: a Unix socket path may have at most {_MAX_UNIX_PATH} bytes"
            )
        return Listener("unix", path)
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"--listen {text!r}: expected tcp:HOST:PORT with a port 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if tls:
        return Listener("tls", host, int(port_text))
    if not _is_loopback(host):
        raise ConfigError(
            f"--listen {text!r}: refusing plain TCP on {host}, which is not a loopback "
            "address: anyone who can reach it could stop any process on this machine. "
            "give --tls-cert and --tls-key (and a --policy) to listen with TLS, use a "
            "Unix socket, or tcp:127.0.0.1:PORT with --insecure-loopback-tcp"
        )
    if not insecure_loopback_tcp:
        raise ConfigError(
            f"--listen {text!r}: plain TCP has no access control; "
            "pass --insecure-loopback-tcp to allow it on loopback"
        )
    return Listener("tcp", host, int(port_text))


def resolve_group(name: str | None) -> int:
    """The operators' group id; by default root's own group."""
    if name is None:
        return pwd.getpwuid(0).pw_gid
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise ConfigError(f"--group {name!r}: no such group") from None


def _chown(path: str, gid: int) -> None:
    # Only root can give a file to root and an arbitrary group; an unprivileged
    # daemon (tests, a developer's sim) keeps its own ownership.
    if os.geteuid() == 0:
        os.chown(path, 0, gid)


def _socket_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        return True


def prepare_unix_socket(listener: Listener, gid: int) -> None:
    """Check the socket's directory at every level, create what is missing (root,
    ``gid``, 0750; see ``socket_dir``) and clear a stale socket.

    A live socket means another daemon runs there; grpc would silently take its path
    over, so refuse instead.
    """
    path = listener.host_or_path
    try:
        secure_directory(os.path.dirname(path), DIR_MODE, gid)
    except UnsafePath as err:
        raise ConfigError(f"refusing the socket {path}: {err}") from None
    if not os.path.lexists(path):
        return
    if os.path.islink(path):
        raise ConfigError(f"refusing the socket {path}: it is a symbolic link")
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ConfigError(f"{path} exists and is not a socket; not touching it")
    if _socket_in_use(path):
        raise ConfigError(f"{path}: another server is listening there")
    os.unlink(path)


@contextlib.contextmanager
def socket_umask() -> Iterator[None]:
    """Create sockets 0660 from the start, so there is no moment they are wider open."""
    old = os.umask(0o117)
    try:
        yield
    finally:
        os.umask(old)


def finish_unix_socket(listener: Listener, gid: int) -> None:
    """Set the bound socket's mode and group (the umask alone does not give the group)."""
    path = listener.host_or_path
    _chown(path, gid)
    os.chmod(path, SOCKET_MODE)
