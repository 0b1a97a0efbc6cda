"""hwbkptd.daemon.config_file (issue 14, item "configuration file"): every hwbkptd flag is a
TOML key, flags win over the file, the file's values pass the flags' own checks, and
``--print-config`` says where each setting came from (its output is a config file itself)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from hwbkptd.daemon.config_file import (
    NOT_IN_FILE,
    ConfigFileError,
    config_keys,
    render_settings,
    resolve_settings,
)
from hwbkptd.daemon.main import build_parser

HWBKPTD = Path(sys.executable).parent / "hwbkptd"


def _settings(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    s = resolve_settings(build_parser, argv, build_parser().parse_args(argv))
    return s.values, s.sources


def test_every_flag_is_a_key() -> None:
    parser = build_parser()
    keys = config_keys(parser)
    flags = {
        max(a.option_strings, key=len).lstrip("-")
        for a in parser._actions  # noqa: SLF001 - the test checks the same list
        if a.option_strings and a.dest not in NOT_IN_FILE
    }
    assert set(keys) == flags
    assert {"listen", "machine", "lease", "hit-buffer", "insecure-loopback-tcp"} <= set(keys)


def test_file_then_flag_precedence(tmp_path: Path) -> None:
    conf = tmp_path / "hwbkptd.toml"
    conf.write_text(
        'machine = "sim:arm64"\nlease = 2.5\nlisten = ["unix:/a", "unix:/b"]\n'
        "insecure-loopback-tcp = true\nhit-buffer = 10\n"
    )
    values, sources = _settings(["--config", str(conf), "--lease", "7", "--listen", "unix:/c"])
    assert (values.machine, values.lease, values.hit_buffer) == ("sim:arm64", 7.0, 10)
    assert values.listen == ["unix:/c"]  # a flag replaces the file's list
    assert values.insecure_loopback_tcp is True
    assert sources["machine"] == f"file {conf}"
    assert (sources["lease"], sources["listen"]) == ("flag", "flag")
    assert sources["halt_timeout"] == "default"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hit-bufer = 3\n", "unknown key 'hit-bufer'"),
        ("lease = -1\n", "lease: '-1' must be greater than 0"),
        ('arming = "magic"\n', "arming: 'magic' is not one of auto, perf, debugreg"),
        ('insecure-loopback-tcp = "yes"\n', "insecure-loopback-tcp: expected true or false"),
        ("hit-buffer = 0\n", "hit-buffer: '0' must be a whole number of at least 1"),
        ("lease = [1]\n", "lease: expected a string or a number"),
        ("lease = \n", "not TOML"),
    ],
)
def test_bad_file_names_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    with pytest.raises(ConfigFileError, match=str(conf)) as info:
        _settings(["--config", str(conf)])
    assert says in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="No such file"):
        _settings(["--config", str(tmp_path / "nope.toml")])


def test_printed_config_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    conf.write_text('machine = "sim:exec=2,data=2"\ngroup = "wheel"\n')
    argv = ["--config", str(conf), "--halt-timeout", "4", "--listen", "tcp:127.0.0.1:0"]
    first = resolve_settings(build_parser, argv, build_parser().parse_args(argv))
    printed = tmp_path / "printed.toml"
    printed.write_text("\n".join(render_settings(first)) + "\n")
    again, sources = _settings(["--config", str(printed)])
    for dest in first.keys:
        assert getattr(again, dest) == getattr(first.values, dest), dest
    assert set(sources.values()) <= {f"file {printed}", "default"}


def test_print_config_from_the_daemon(tmp_path: Path) -> None:
    conf = tmp_path / "hwbkptd.toml"
    conf.write_text('machine = "sim"\nlease = 3.0\n')
    done = subprocess.run(
        [str(HWBKPTD), "--config", str(conf), "--hit-buffer", "64", "--print-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"lease = 3.0  # from file {conf}" in lines
    assert "hit-buffer = 64  # from flag" in lines
    assert 'listen = ["unix:/run/hwbkpt/hwbkpt.sock"]  # from default' in lines
    bad = tmp_path / "bad.toml"
    bad.write_text("lease = 0\n")
    done = subprocess.run(
        [str(HWBKPTD), "--config", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"hwbkptd: error: --config {bad}: lease: "), done.stderr
