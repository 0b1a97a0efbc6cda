"""``hwbkptd``'s limit flags: one per field of ``Limits``, defaults from ``Limits()``."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from hwbkptd.core.limits import Limits

__all__ = ["add_limit_flags", "limits_from_args"]

_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def _size(text: str) -> int:
    """A whole number of at least 1, optionally with k, m or g (KiB, MiB, GiB)."""
    body, unit = text.strip().lower(), 1
    if body and body[-1] in _UNITS:
        body, unit = body[:-1], _UNITS[body[-1]]
    if not body.isdigit() or int(body) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a whole number of at least 1 (k, m, g for KiB, MiB, GiB)"
        )
    return int(body) * unit


def _count_or_zero(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number")
    return int(text)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _shown(value: float) -> str:
    for suffix, unit in reversed(_UNITS.items()):
        if isinstance(value, int) and value >= unit and value % unit == 0:
            return f"{value // unit}{suffix}"
    return f"{value:g}"


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "limits", "what one client may make the broker hold or do (`hwbkpt info` lists them)"
    )
    for info in Limits().describe():
        kind: Callable[[str], int | float]
        if info.name == "replay_events":
            kind = _count_or_zero
        elif isinstance(info.value, float):
            kind = _rate
        else:
            kind = _size
        group.add_argument(
            info.flag,
            dest=f"limit_{info.name}",
            type=kind,
            default=info.value,
            metavar="N",
            help=f"{info.what} (default {_shown(info.value)})",
        )


def limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(**{f.name: getattr(args, f"limit_{f.name}") for f in dataclasses.fields(Limits)})
