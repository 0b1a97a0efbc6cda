"""How a client proves who it is to a broker on the network (DESIGN section 7).

``ca`` (the broker's CA, PEM) turns TLS on; ``cert`` and ``key`` add a client
certificate (mTLS); ``token_file`` holds a bearer token sent as ``authorization``
metadata on every call. A session's secret is call metadata too (``SESSION_TOKEN_KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from hwbkpt.errors import HwbkptError

__all__ = ["SESSION_TOKEN_KEY", "Credentials", "session_metadata"]

#: Call metadata carrying a session's secret (the broker's ``credentials`` module names it too).
SESSION_TOKEN_KEY = "hwbkpt-session-token"


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise HwbkptError("INVALID_ARGUMENT", f"{what} {path}: {err.strerror}") from None


@dataclass(frozen=True, slots=True)
class Credentials:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    token_file: str | None = None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plain channel."""
        if (self.cert is None) != (self.key is None):
            raise HwbkptError("INVALID_ARGUMENT", "a client certificate needs its key: give both")
        if self.ca is None:
            if self.cert is not None:
                raise HwbkptError("INVALID_ARGUMENT", "a client certificate needs TLS: give ca")
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "ca"),
            private_key=_read(self.key, "key") if self.key else None,
            certificate_chain=_read(self.cert, "cert") if self.cert else None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: the bearer token, if any."""
        if self.token_file is None:
            return ()
        token = _read(self.token_file, "token_file").decode(errors="replace").strip()
        if not token:
            raise HwbkptError("INVALID_ARGUMENT", f"token_file {self.token_file} is empty")
        return (("authorization", f"Bearer {token}"),)


def session_metadata(base: tuple[tuple[str, str], ...], token: str) -> tuple[tuple[str, str], ...]:
    """``base`` plus the session's secret, when the call belongs to a session."""
    return (*base, (SESSION_TOKEN_KEY, token)) if token else base
