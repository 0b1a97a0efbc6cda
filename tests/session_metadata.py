"""The call metadata naming a session: tests that speak raw gRPC send a session's secret
this way (issue 12: it left the message bodies)."""

from __future__ import annotations

__all__ = ["SESSION_TOKEN_KEY", "session_md"]

SESSION_TOKEN_KEY = "hwbkpt-session-token"


def session_md(token: str) -> tuple[tuple[str, str], ...]:
    return ((SESSION_TOKEN_KEY, token),)
