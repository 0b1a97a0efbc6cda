"""Issue 12: every limit is an hwbkptd flag, with the Limits defaults and sizes in k/m/g."""

from __future__ import annotations

import pytest

from hwbkptd.core.limits import Limits
from hwbkptd.daemon.main import build_parser, config_from_args


def test_item12_defaults_are_the_limits_defaults() -> None:
    config = config_from_args(build_parser().parse_args([]))
    assert config.limits == Limits()


def test_item12_each_flag_sets_its_limit() -> None:
    args = build_parser().parse_args(
        [
            "--memory-budget", "1g",
            "--max-message-bytes", "64k",
            "--max-sessions", "3",
            "--max-streams", "4",
            "--max-requests", "5",
            "--max-hit-buffer", "6",
            "--replay-events", "0",
            "--calls-per-second", "2.5",
            "--call-burst", "7",
            "--max-name-length", "8",
            "--refusal-log-rate", "9",
            "--refusal-log-burst", "10",
        ]
    )  # fmt: skip
    assert config_from_args(args).limits == Limits(
        memory_budget_bytes=1 << 30,
        max_message_bytes=64 * 1024,
        max_sessions_per_identity=3,
        max_streams_per_identity=4,
        max_requests_per_session=5,
        max_hit_buffer=6,
        replay_events=0,
        calls_per_second=2.5,
        call_burst=7,
        max_name_length=8,
        refusal_log_per_second=9,
        refusal_log_burst=10,
    )


@pytest.mark.parametrize(
    "argv",
    [["--max-sessions", "0"], ["--memory-budget", "-1"], ["--memory-budget", "1t"],
     ["--calls-per-second", "0"], ["--replay-events", "-3"]],
)  # fmt: skip
def test_item12_a_bad_limit_is_refused_by_the_parser(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
