"""The audit log: every state change is logged with who did it (DESIGN section 7)."""

from __future__ import annotations

from typing import Any

import structlog

from hwbkptd.core.sessions import Session

__all__ = ["audit"]

_log = structlog.get_logger("hwbkptd.broker")


def audit(event: str, session: Session, **fields: Any) -> None:
    _log.info(
        event,
        identity=session.identity.name,
        session=session.name,
        session_id=session.id,
        **fields,
    )
