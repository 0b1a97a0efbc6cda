"""``hwbkptd --config FILE``: every flag as a TOML key, and where each setting came from.

A key is the flag's long name without its dashes (``hit-buffer = 8192`` is
``--hit-buffer 8192``); the file's value goes through the same conversion and checks as the
flag's text, so a file can say nothing a command line could not. Precedence: a flag given on
the command line, then the file, then the default. A repeatable flag given on the command
line replaces the file's list (it does not add to it). Keys are found from the parser itself,
so a flag added to ``hwbkptd`` is a key at once.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NOT_IN_FILE",
    "ConfigFileError",
    "Settings",
    "config_keys",
    "render_settings",
    "resolve_settings",
]

#: Flags about the run itself, not settings: never keys of the file (``check_policy``:
#: the security work's "validate a policy file and exit").
NOT_IN_FILE = frozenset({"help", "config", "print_config", "check_policy"})

DEFAULT, FLAG = "default", "flag"


class ConfigFileError(ValueError):
    """The file cannot be read or says something a flag could not; names the file and key."""


@dataclass(frozen=True)
class Settings:
    #: The effective settings, as argparse would have made them from flags alone.
    values: argparse.Namespace
    #: Per setting (the action's dest): "default", "flag" or "file PATH".
    sources: dict[str, str]
    #: Per setting: its key in the file (the long flag without dashes).
    keys: dict[str, str]


def config_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every settable flag by its file key."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse exposes no public list of actions
        if action.dest in NOT_IN_FILE or not action.option_strings:
            continue
        longest = max(action.option_strings, key=len)
        keys[longest.lstrip("-")] = action
    return keys


def _convert(action: argparse.Action, key: str, value: object) -> object:
    """The file's value as the flag's text would have become (same type function, choices)."""
    if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001 - no public name
        if not isinstance(value, bool):
            raise ConfigFileError(f"{key}: expected true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):  # noqa: SLF001 - no public name
        items = value if isinstance(value, list) else [value]
        return [_one(action, key, item) for item in items]
    return _one(action, key, value)


def _one(action: argparse.Action, key: str, value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigFileError(f"{key}: expected a string or a number, not {value!r}")
    text = str(value)
    convert: Callable[[str], Any] | None = action.type  # type: ignore[assignment]
    try:
        result = convert(text) if convert is not None else text
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise ConfigFileError(f"{key}: {err}") from None
    if action.choices is not None and result not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigFileError(f"{key}: {value!r} is not one of {choices}")
    return result


def _given_on_command_line(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str]
) -> set[str]:
    """The dests the command line set: parsed again with every default suppressed."""
    quiet = build_parser()
    for action in quiet._actions:  # noqa: SLF001 - see config_keys
        action.default = argparse.SUPPRESS
    return set(vars(quiet.parse_args(list(argv))))


def resolve_settings(
    build_parser: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str],
    args: argparse.Namespace,
) -> Settings:
    """Merge the defaults, ``args.config``'s file and the flags in ``args`` (parsed from
    ``argv`` by ``build_parser()``). Raises ConfigFileError naming the file and the key."""
    keys = config_keys(build_parser())
    by_dest = {action.dest: key for key, action in keys.items()}
    given = _given_on_command_line(build_parser, argv)
    sources = {dest: FLAG if dest in given else DEFAULT for dest in by_dest}
    values = argparse.Namespace(**vars(args))
    path = getattr(args, "config", None)
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise ConfigFileError(f"{path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigFileError(f"{path}: not TOML: {err}") from None
        for key, raw in data.items():
            action = keys.get(key)
            if action is None:
                known = ", ".join(sorted(keys))
                raise ConfigFileError(f"{path}: unknown key {key!r} (keys: {known})")
            try:
                converted = _convert(action, key, raw)
            except ConfigFileError as err:
                raise ConfigFileError(f"{path}: {err}") from None
            if action.dest not in given:
                setattr(values, action.dest, converted)
                sources[action.dest] = f"file {path}"
    return Settings(values=values, sources=sources, keys=by_dest)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def render_settings(settings: Settings) -> list[str]:
    """``key = value  # from default|flag|file PATH``, one per setting; the lines are a
    config file themselves (unset settings are comments)."""
    lines: list[str] = []
    for dest, key in sorted(settings.keys.items(), key=lambda item: item[1]):
        value = getattr(settings.values, dest)
        source = settings.sources[dest]
        if value is None:
            lines.append(f"# {key} is unset  # from {source}")
        else:
            lines.append(f"{key} = {_toml_value(value)}  # from {source}")
    return lines
