"""Checks for LaunchProcess, and naming attach errors by the field of the call that caused them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwbkptd.core.errors import BrokerError, InvalidArgument, NotFound, PermissionDenied

__all__ = ["MAX_ARGS", "check_launch", "spec_error"]

#: More arguments than a kernel's ARG_MAX would take anyway.
MAX_ARGS = 65_536


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    if "\0" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def check_launch(
    argv: Sequence[str], env: Mapping[str, str], cwd: str
) -> tuple[tuple[str, ...], dict[str, str], str]:
    """Validated (argv, env, cwd); an empty ``cwd`` means ``/``."""
    if isinstance(argv, str) or not isinstance(argv, Sequence):
        raise InvalidArgument("argv", "must be a list of strings")
    if not argv:
        raise InvalidArgument("argv", "the program to launch is missing")
    if len(argv) > MAX_ARGS:
        raise InvalidArgument("argv", f"at most {MAX_ARGS} arguments, got {len(argv)}")
    args = tuple(_text(a, "argv") for a in argv)
    if not args[0]:
        raise InvalidArgument("argv", "the program to launch is missing")
    if not isinstance(env, Mapping):
        raise InvalidArgument("env", "must be a map of strings")
    environment: dict[str, str] = {}
    for key, value in env.items():
        name = _text(key, "env")
        if not name or "=" in name:
            raise InvalidArgument("env", f"{name!r} is not a variable name")
        environment[name] = _text(value, "env")
    where = _text(cwd, "cwd") or "/"
    if not where.startswith("/"):
        raise InvalidArgument("cwd", f"must be an absolute path, got {where!r}")
    return args, environment, where


def spec_error(err: BrokerError) -> BrokerError:
    """An error of the attach a request caused, naming the request's field (``spec.pid``)."""
    if isinstance(err, InvalidArgument) and err.field in ("pid", "tid"):
        return InvalidArgument(f"spec.{err.field}", err.reason)
    if isinstance(err, NotFound) and err.field in ("pid", "tid"):
        return NotFound(f"spec.{err.field}", err.message)
    if isinstance(err, PermissionDenied) and err.field in ("", "pid"):
        return PermissionDenied(err.message, field="spec.pid")
    return err
