"""docs/architecture.md stays true: every module and every ``Class.member`` it names exists.

The document walks a request and a hit module by module; a rename or a split that
forgets it makes it lie. This test reads the names in backquotes and finds each in the
source (``server/`` as ``hwbkptd``, the Python client, the protobuf messages).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SOURCES = (ROOT / "server", ROOT / "clients" / "python" / "hwbkpt")
PROTOS = ROOT / "proto"

_MODULE = re.compile(r"`([a-z_/]+\.py)`")
_MEMBER = re.compile(r"`([A-Z][A-Za-z0-9]*)\.([a-z_][a-z0-9_]*)`")
_FIELD = re.compile(r"\s*(?:repeated\s+|optional\s+)?[\w.]+\s+(\w+)\s*=")


def _doc() -> str:
    return DOC.read_text()


def _members() -> dict[str, set[str]]:
    """Class name -> what it defines: methods, class-level names, ``self.x`` assignments."""
    found: dict[str, set[str]] = defaultdict(set)
    for room in SOURCES:
        for path in room.rglob("*.py"):
            if "_pb2" in path.name:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    names = found[node.name]
                    for item in ast.walk(node):
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                            names.add(item.name)
                        elif isinstance(item, ast.Name) and isinstance(item.ctx, ast.Store):
                            names.add(item.id)
                        elif (
                            isinstance(item, ast.Attribute)
                            and isinstance(item.ctx, ast.Store)
                            and isinstance(item.value, ast.Name)
                            and item.value.id == "self"
                        ):
                            names.add(item.attr)
    return found


def _proto_fields() -> dict[str, set[str]]:
    """Message name -> its field names, from the .proto files."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PROTOS.rglob("*.proto"):
        message = ""
        for line in path.read_text().splitlines():
            if m := re.match(r"\s*message\s+(\w+)", line):
                message = m.group(1)
            elif message and (f := _FIELD.match(line)):
                found[message].add(f.group(1))
    return found


def _module_exists(name: str) -> bool:
    if (ROOT / name).is_file():
        return True
    return any((room / name).is_file() or any(room.rglob(name)) for room in SOURCES)


def test_the_doc_names_modules_and_members() -> None:
    text = _doc()
    assert len(set(_MODULE.findall(text))) > 50
    assert len(set(_MEMBER.findall(text))) > 30


def test_the_lookups_tell_present_from_absent() -> None:
    classes = _members()
    assert "set_breakpoint" in classes["Broker"]
    assert "not_a_method" not in classes["Broker"]
    assert "resolution" in _proto_fields()["Breakpoint"]
    assert _module_exists("core/broker.py")
    assert not _module_exists("core/no_such.py")


def test_every_module_named_exists() -> None:
    missing = sorted(m for m in set(_MODULE.findall(_doc())) if not _module_exists(m))
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_member_named_exists() -> None:
    classes = _members()
    messages = _proto_fields()
    missing = sorted(
        f"{cls}.{member}"
        for cls, member in set(_MEMBER.findall(_doc()))
        if member not in classes.get(cls, set()) and member not in messages.get(cls, set())
    )
    assert missing == [], f"docs/architecture.md names members that do not exist: {missing}"
