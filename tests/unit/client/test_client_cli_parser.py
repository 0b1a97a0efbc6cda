"""hwbkpt.cli._parser: global options first, watch defaults, numbers and presets."""

from __future__ import annotations

import pytest

from hwbkpt.cli._parser import build_parser, parse_location, parse_number, parse_priority_arg


def test_global_options_come_before_the_subcommand() -> None:
    args = build_parser().parse_args(["--server", "unix:/tmp/s.sock", "--json", "info"])
    assert (args.server, args.json, args.command) == (["unix:/tmp/s.sock"], True, "info")


def test_global_options_after_the_subcommand_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["info", "--json"])
    assert info.value.code == 2
    assert "unrecognized arguments: --json" in capsys.readouterr().err


def test_watch_defaults() -> None:
    args = build_parser().parse_args(["watch", "--pid", "100", "0x601018"])
    assert (args.pid, args.tid, args.kernel, args.address) == (100, None, False, 0x601018)
    assert (args.length, args.access, args.priority) == (None, "write", None)
    assert (args.halt, args.count, args.timeout, args.name) == (False, 0, 0.0, None)


def test_watch_full() -> None:
    args = build_parser().parse_args(
        [
            "watch",
            "--tid",
            "7",
            "1234",
            "--length",
            "4",
            "--access",
            "rw",
            "--priority",
            "high",
            "--halt",
            "--count",
            "3",
            "--timeout",
            "2.5",
            "--name",
            "ide",
            "--changed-only",
        ]
    )
    assert (args.tid, args.address, args.length, args.access) == (7, 1234, 4, "rw")
    assert (args.priority, args.halt, args.count, args.timeout) == (75, True, 3, 2.5)
    assert (args.name, args.changed_only) == ("ide", True)


@pytest.mark.parametrize(
    "argv",
    [
        ["watch", "0x10"],  # no target
        ["watch", "--pid", "1", "--kernel", "0x10"],  # two targets
        ["watch", "--pid", "x", "0x10"],
        ["watch", "--pid", "1", "0x10", "--access", "execute"],
        ["watch", "--pid", "1", "0x10", "--priority", "urgent"],
        ["watch", "--pid", "1", "0x10", "--timeout", "soon"],
        ["sim", "touch", "0x10"],  # --pid is required
    ],
)
def test_bad_command_lines_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_out_of_range_priority_is_left_to_the_broker() -> None:
    assert (
        build_parser().parse_args(["watch", "--pid", "1", "0", "--priority", "101"]).priority == 101
    )


@pytest.mark.parametrize(
    ("text", "value"), [("0x10", 16), ("0X1f", 31), ("10", 10), ("1_000", 1000), ("-0x1", -1)]
)
def test_numbers(text: str, value: int) -> None:
    assert parse_number(text) == value


def test_locations_fall_back_to_symbols() -> None:
    assert parse_location("0xffffffff81000000") == 0xFFFFFFFF81000000
    assert parse_location("jiffies") == "jiffies"
    assert parse_location("init_stack+0x10") == "init_stack+0x10"


def test_priority_presets() -> None:
    assert [parse_priority_arg(p) for p in ("low", "normal", "debugger", "HIGH", "60")] == [
        10,
        25,
        50,
        75,
        60,
    ]


def test_sim_commands() -> None:
    p = build_parser()
    assert p.parse_args(["sim", "spawn", "--threads", "3"]).threads == 3
    args = p.parse_args(["sim", "touch", "--pid", "5", "0x1000", "--value", "0x2a", "--size", "4"])
    assert (args.pid, args.tid, args.address, args.value, args.size) == (5, 0, 0x1000, 42, 4)
    assert args.access == "write"


def test_watch_nonstop() -> None:
    args = build_parser().parse_args(["watch", "--pid", "100", "0x10", "--nonstop"])
    assert args.nonstop is True
    assert build_parser().parse_args(["watch", "--pid", "1", "0x10"]).nonstop is False


def test_attach() -> None:
    args = build_parser().parse_args(["attach", "--pid", "42", "--timeout", "2.5"])
    assert (args.command, args.pid, args.timeout, args.name, args.follow_fork) == (
        "attach",
        42,
        2.5,
        None,
        False,
    )


def test_launch_takes_the_program_after_double_dash() -> None:
    options = ["--watch", "0x404040", "--watch", "counter", "--priority", "high", "--count", "3"]
    args = build_parser().parse_args(["launch", *options, "--", "./prog", "--flag", "-x"])
    assert args.watch == [0x404040, "counter"]
    assert (args.priority, args.count, args.access, args.length) == (75, 3, "write", None)
    assert args.program == ["--", "./prog", "--flag", "-x"]  # cmd_launch drops the "--"
    bare = build_parser().parse_args(["launch", "/bin/true"])
    assert (bare.watch, bare.program) == (None, ["/bin/true"])


def test_item5_server_repeats_for_the_fleet_commands() -> None:
    """Issue 14, item 5: ``--server`` may be given once per broker."""
    args = build_parser().parse_args(["--server", "unix:/a", "--server", "tcp:h:1", "slots"])
    assert (args.server, args.command) == (["unix:/a", "tcp:h:1"], "slots")
    assert build_parser().parse_args(["slots"]).server is None
