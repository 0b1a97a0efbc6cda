"""hwbkpt.cli._process: what ``launch`` runs, before any broker call."""

from __future__ import annotations

import pytest

from hwbkpt.cli._parser import build_parser
from hwbkpt.cli._process import program_argv


def test_the_double_dash_is_not_part_of_the_program() -> None:
    args = build_parser().parse_args(["launch", "--", "./prog", "--", "x"])
    assert program_argv(args) == ["./prog", "--", "x"]
    assert program_argv(build_parser().parse_args(["launch", "ls", "-l"])) == ["ls", "-l"]


@pytest.mark.parametrize("argv", [["launch"], ["launch", "--"]])
def test_a_launch_needs_a_program(argv: list[str]) -> None:
    with pytest.raises(ValueError, match="give the program"):
        program_argv(build_parser().parse_args(argv))
