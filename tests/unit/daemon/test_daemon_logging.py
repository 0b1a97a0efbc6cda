"""hwbkptd.daemon.logging: JSON or console lines on stderr, configured once."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from hwbkptd.daemon import logging as hwlog


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    hwlog.reset()


def test_json_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    hwlog.configure("json", "info", force=True)
    structlog.get_logger("t").info("hello", machine="sim")
    structlog.get_logger("t").debug("hidden")
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    record = json.loads(line)
    assert (record["event"], record["machine"], record["level"]) == ("hello", "sim", "info")
    assert "timestamp" in record


def test_json_exception_has_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    hwlog.configure("json", "info", force=True)
    try:
        raise KeyError("boom")
    except KeyError:
        structlog.get_logger("t").exception("failed")
    record = json.loads(capsys.readouterr().err)
    assert "KeyError" in json.dumps(record["exception"])


def _fail_holding(secret: str) -> None:
    request = {"token": secret}
    raise KeyError(f"no such request (of {len(request)} fields)")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_item12_tracebacks_show_no_locals(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """A traceback names the frames, never their variables: those hold request messages,
    and requests carry session tokens."""
    hwlog.configure(fmt, "info", force=True)
    secret = "tok-" + "s3cr3t" * 4
    try:
        _fail_holding(secret)
    except KeyError:
        structlog.get_logger("t").exception("failed")
    err = capsys.readouterr().err
    assert "_fail_holding" in err  # the traceback is there
    assert secret not in err


def test_console_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    hwlog.configure("console", "debug", force=True)
    structlog.get_logger("t").debug("visible", a=1)
    err = capsys.readouterr().err
    assert "visible" in err
    assert "a=1" in err
    assert not err.startswith("{")


def test_configured_once(capsys: pytest.CaptureFixture[str]) -> None:
    hwlog.configure("json", "error", force=True)
    hwlog.configure("console", "debug")  # ignored: already configured
    structlog.get_logger("t").info("quiet")
    assert capsys.readouterr().err == ""


def test_default_format_follows_the_terminal() -> None:
    assert hwlog.default_format(io.StringIO()) == "json"


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "loud")])
def test_bad_settings(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        hwlog.configure(fmt, level, force=True)
