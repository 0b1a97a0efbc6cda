"""What the sync and async clients share: channel options, event numbering, reconnect policy."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from hwbkpt import models as m
from hwbkpt._convert import event_from_pb
from hwbkpt.v1 import broker_pb2 as pb

__all__ = [
    "CALL_TIMEOUT",
    "CHANNEL_OPTIONS",
    "DEFAULT_LEASE",
    "FATAL_CODES",
    "HEALTHY_STREAM",
    "RESUME_TIMEOUT",
    "EventCursor",
    "ReconnectPolicy",
    "launch_request",
]

#: Seconds a unary call may take before it fails with DEADLINE_EXCEEDED.
CALL_TIMEOUT = 30.0
#: Seconds one resume attempt may take: a hung attempt must not outlast the lease.
RESUME_TIMEOUT = 5.0
#: The broker's default lease, used when it does not say.
DEFAULT_LEASE = 15.0

# gRPC's own reconnect backoff starts at 1 s and grows to 2 min; a session that must
# come back within its lease needs the channel to retry far sooner than that.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

#: Seconds a stream must stay up to count as healthy again after a resume.
HEALTHY_STREAM = 1.0

#: Stream failures after which resuming cannot help: the session is gone or not ours.
FATAL_CODES = frozenset(
    {"NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT", "UNIMPLEMENTED"}
)


@dataclass(slots=True)
class ReconnectPolicy:
    """Bounded exponential backoff between resume attempts, for at most ``lease + grace`` s."""

    initial: float = 0.05
    maximum: float = 1.0
    #: Extra seconds past the lease: the broker starts the lease when *it* sees the drop.
    grace: float = 1.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


class EventCursor:
    """Tracks the last event number seen so a resumed stream continues without repeats.

    Events at or below ``last_seq`` (a replay overlap) are dropped; a jump above
    ``last_seq + 1`` means the broker no longer held those events and is counted in
    ``missed``.
    """

    __slots__ = ("last_seq", "missed")

    def __init__(self, last_seq: int = 0) -> None:
        self.last_seq = last_seq
        self.missed = 0

    def accept(self, msg: pb.Event) -> m.Event | None:
        if msg.seq <= self.last_seq:
            return None
        if msg.seq > self.last_seq + 1:
            self.missed += msg.seq - self.last_seq - 1
        self.last_seq = msg.seq
        return event_from_pb(msg)


def launch_request(
    token: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    follow_fork: bool,
) -> pb.LaunchProcessRequest:
    """The program runs as the broker's child: by default with this process's environment and
    working directory, as if started from here."""
    if isinstance(argv, str):
        raise TypeError("argv is a sequence of strings, not one string")
    return pb.LaunchProcessRequest(
        token=token,
        argv=list(argv),
        env=dict(os.environ if env is None else env),
        cwd=os.getcwd() if cwd is None else cwd,
        follow_fork=follow_fork,
    )
