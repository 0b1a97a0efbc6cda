"""structlog set-up for the daemon: one JSON object or one readable line per event, on stderr.

JSON is for journald and log shippers; the console renderer is for a person at a
terminal. The daemon picks console on a tty and JSON otherwise unless told.

Tracebacks never show local variables, in either format: a servicer's locals hold
request messages, and requests carry session tokens (issue 9, item 12).
"""

from __future__ import annotations

import logging as stdlib_logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["LEVELS", "configure", "default_format", "reset"]

LEVELS = ("debug", "info", "warning", "error", "critical")

_configured = False


def default_format(stream: TextIO | None = None) -> str:
    stream = sys.stderr if stream is None else stream
    return "console" if stream.isatty() else "json"


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Looked up per logger, not once: whoever replaces sys.stderr (pytest) gets the output.
    return structlog.PrintLogger(sys.stderr)


def configure(fmt: str | None = None, level: str = "info", *, force: bool = False) -> None:
    """Configure structlog (and route the stdlib ``logging`` of grpc to stderr); once.

    ``force`` reconfigures, for tests that check the output format.
    """
    global _configured
    if _configured and not force:
        return
    fmt = fmt or default_format()
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}: use json or console")
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    numeric = getattr(stdlib_logging, level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # Named, not left to the default: with ``rich`` installed the default shows locals.
        processors.append(
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # grpcio reports through the standard library; keep its warnings on stderr too.
    stdlib_logging.basicConfig(
        level=max(numeric, stdlib_logging.WARNING), stream=sys.stderr, force=True
    )
    _configured = True


def reset() -> None:
    """Forget the configuration, so the next ``configure`` applies (tests)."""
    global _configured
    structlog.reset_defaults()
    _configured = False
