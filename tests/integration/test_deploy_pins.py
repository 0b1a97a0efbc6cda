"""Issue 14, item 1: the image and the systemd install use the versions the tests ran with.

deploy/requirements.txt pins the broker's run-time dependencies for the Dockerfile; each pin
must equal requirements-dev.txt's (what make setup installs and the tests run against), and
cover every dependency the two packages declare."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _declared(pyproject: Path) -> set[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower() for d in deps}


def test_item1_image_pins_equal_the_tested_ones() -> None:
    image, dev = _pins(REPO / "deploy/requirements.txt"), _pins(REPO / "requirements-dev.txt")
    assert image
    assert {name: dev.get(name) for name in image} == image


def test_item1_image_pins_cover_every_declared_dependency() -> None:
    declared = _declared(REPO / "server/pyproject.toml") | _declared(
        REPO / "clients/python/pyproject.toml"
    )
    declared -= {"hwbkpt"}  # the client package itself, built from the source tree
    assert declared <= _pins(REPO / "deploy/requirements.txt").keys()


def test_item1_dockerfile_is_multi_stage_with_exact_bases() -> None:
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert len(bases) == 2, bases
    # An exact patch version and distribution, never a moving tag like python:3 or latest.
    assert all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases), bases
    assert "HEALTHCHECK" in text
    assert re.search(r'^ENTRYPOINT \["hwbkptd"\]', text, flags=re.M)
