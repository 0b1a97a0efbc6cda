"""End-to-end fixtures: a real ``hwbkptd`` per test module, clients as real processes.

Each module may set ``HWBKPTD_OPTIONS = {"machine": "sim:arm64", "lease": 1.0}``; the
daemon listens on a Unix socket in a temporary directory and is stopped with SIGTERM
(which must exit 0) when the module is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Daemon, start_daemon
from security_support import Secured, start_secured

import hwbkpt

__all__ = ["client", "daemon"]

os.environ.pop("HWBKPT_SERVER", None)  # every test names its server explicitly


@pytest.fixture(scope="module")
def daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    options: dict[str, Any] = getattr(request.module, "HWBKPTD_OPTIONS", {})
    d = start_daemon(tmp_path_factory.mktemp("hwbkptd"), **options)
    yield d
    rc = d.stop()
    assert rc == 0, f"hwbkptd exited {rc} on SIGTERM:\n{d.log()}"


@pytest.fixture
def client(daemon: Daemon) -> Iterator[hwbkpt.Client]:
    """An in-process library client of the module's daemon; closes its sessions after."""
    with daemon.client() as c:
        yield c


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    """A broker on TLS with security_support's policy (alice, bob, carol, u1000)."""
    s = start_secured(tmp_path)
    yield s
    assert s.daemon.stop() == 0, s.daemon.log()
