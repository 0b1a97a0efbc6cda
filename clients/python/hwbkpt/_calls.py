"""Each broker call without I/O: which method, the request built from models, and what its
answer means as a model. Both clients and both sessions send these through their transport
(``transport.call(calls.remove(token, 3))``), so each call is written once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from hwbkpt import _convert as cv
from hwbkpt import models as m
from hwbkpt._args import parse_access, parse_action, parse_priority, seconds_of, value_bytes
from hwbkpt.errors import from_status_bytes
from hwbkpt.v1 import broker_pb2 as pb
from hwbkpt.v1 import sim_pb2 as simpb

__all__ = [
    "DEFAULT_LEASE",
    "MAX_SLOT_MAP_PAGES",
    "Call",
    "SessionTicket",
    "attach_process",
    "close_session",
    "describe",
    "detach_process",
    "launch_process",
    "list_breakpoints",
    "modify",
    "open_session",
    "release_process",
    "remove",
    "resolve_location",
    "resume_session",
    "resume_threads",
    "resume_threads_on_stream",
    "resumed_on_stream",
    "set_breakpoint",
    "sim_end_process",
    "sim_end_thread",
    "sim_spawn",
    "sim_spawn_thread",
    "sim_touch",
    "slot_map_page",
    "stream_events",
    "watch_slot_map",
]

T = TypeVar("T")

#: The broker's default lease, used when it does not say.
DEFAULT_LEASE = 15.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One unary call: ``service.method(request)``, its answer read by ``answer``."""

    service: Literal["broker", "sim"]
    method: str
    request: Message
    answer: Callable[[Any], T]
    #: The session's secret, sent as call metadata; "" for calls outside a session.
    token: str = ""


def _nothing(resp: object) -> None:
    return None


@dataclass(frozen=True, slots=True)
class SessionTicket:
    """What a session is opened or taken over with."""

    session_id: str
    name: str
    token: str
    lease_seconds: float


# --- the machine -----------------------------------------------------------------------
def describe() -> Call[m.MachineInfo]:
    return Call("broker", "DescribeMachine", pb.DescribeMachineRequest(), cv.machine_from_pb)


def slot_map_page(pid: int, pool: str, page_token: str) -> Call[pb.GetSlotMapResponse]:
    """One page of the slot map; the clients follow ``next_page_token`` to the end."""
    req = pb.GetSlotMapRequest(pid=pid, pool=pool, page_token=page_token)
    return Call("broker", "GetSlotMap", req, _page)


def _page(resp: pb.GetSlotMapResponse) -> pb.GetSlotMapResponse:
    return resp


#: More pages than this in one walk is a broker that does not move on: stop, do not loop.
MAX_SLOT_MAP_PAGES = 100_000


# --- sessions --------------------------------------------------------------------------
def _duration(seconds: float) -> Duration:
    out = Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def _seconds(value: Duration) -> float:
    return value.seconds + value.nanos / 1e9


def watch_slot_map(pid: int, min_interval: float | timedelta) -> pb.WatchSlotMapRequest:
    interval = seconds_of(min_interval, "min_interval")
    return pb.WatchSlotMapRequest(pid=pid, min_interval=_duration(interval))


def open_session(
    name: str, lease_seconds: float | timedelta, hit_buffer: int
) -> Call[SessionTicket]:
    def answer(resp: pb.OpenSessionResponse) -> SessionTicket:
        return SessionTicket(
            resp.session_id, name, resp.token, _seconds(resp.lease) or DEFAULT_LEASE
        )

    lease = _duration(seconds_of(lease_seconds, "lease_seconds"))
    req = pb.OpenSessionRequest(name=name, lease=lease, hit_buffer=hit_buffer)
    return Call("broker", "OpenSession", req, answer)


def resume_session(token: str, lease_seconds: float | timedelta = 0) -> Call[SessionTicket]:
    """Take a session over by its token; the broker does not say its lease, so
    ``lease_seconds`` (0: the default) is how long the client keeps trying to resume."""

    def answer(resp: pb.ResumeSessionResponse) -> SessionTicket:
        lease = seconds_of(lease_seconds, "lease_seconds")
        return SessionTicket(resp.session_id, resp.name, token, lease or DEFAULT_LEASE)

    return Call("broker", "ResumeSession", pb.ResumeSessionRequest(), answer, token=token)


def close_session(token: str) -> Call[None]:
    return Call("broker", "CloseSession", pb.CloseSessionRequest(), _nothing, token=token)


def stream_events(after_seq: int) -> pb.StreamEventsRequest:
    """The request of a session's event stream (its secret goes in the call's metadata);
    runs of like hits come as one ``HitRun`` each, which the session expands."""
    return pb.StreamEventsRequest(after_seq=after_seq, hit_runs=True)


# --- requests --------------------------------------------------------------------------
def set_breakpoint(token: str, spec: m.BreakpointSpec) -> Call[m.Breakpoint]:
    req = pb.SetBreakpointRequest(spec=cv.spec_to_pb(spec))
    return Call(
        "broker", "SetBreakpoint", req, lambda r: cv.breakpoint_from_pb(r.breakpoint), token=token
    )


def modify(
    token: str,
    breakpoint_id: int,
    priority: int | str | None,
    action: m.Action | str | None,
    filter: m.Filter | None,
) -> Call[m.Breakpoint]:
    """What is ``None`` stays as it is."""
    req = pb.ModifyBreakpointRequest(breakpoint_id=breakpoint_id)
    prio = parse_priority(priority)
    if prio is not None:
        req.priority = prio
    if action is not None:
        req.action = cv.action_to_pb(parse_action(action))
    if filter is not None:
        req.filter.CopyFrom(cv.filter_to_pb(filter))
    return Call(
        "broker",
        "ModifyBreakpoint",
        req,
        lambda r: cv.breakpoint_from_pb(r.breakpoint),
        token=token,
    )


def remove(token: str, breakpoint_id: int) -> Call[None]:
    req = pb.RemoveBreakpointRequest(breakpoint_id=breakpoint_id)
    return Call("broker", "RemoveBreakpoint", req, _nothing, token=token)


def list_breakpoints(token: str, page_token: str = "") -> Call[tuple[list[m.Breakpoint], str]]:
    """One page of the session's requests, and the token of the next ("" on the last)."""

    def answer(resp: pb.ListBreakpointsResponse) -> tuple[list[m.Breakpoint], str]:
        return [cv.breakpoint_from_pb(b) for b in resp.breakpoints], resp.next_page_token

    req = pb.ListBreakpointsRequest(page_token=page_token)
    return Call("broker", "ListBreakpoints", req, answer, token=token)


# --- halted threads --------------------------------------------------------------------
def resume_threads(token: str, tids: Sequence[int]) -> Call[tuple[int, ...]]:
    req = pb.ResumeThreadsRequest(tids=list(tids))
    return Call("broker", "ResumeThreads", req, lambda r: tuple(r.resumed_tids), token=token)


def resume_threads_on_stream(tids: Sequence[int]) -> pb.ResumeThreadsStreamRequest:
    return pb.ResumeThreadsStreamRequest(tids=list(tids))


def resumed_on_stream(resp: pb.ResumeThreadsStreamResponse) -> tuple[int, ...]:
    """The threads resumed, or the refusal the stream answered with, raised as the unary
    call would raise it."""
    if resp.error_status:
        raise from_status_bytes(resp.error_status)
    return tuple(resp.resumed_tids)


# --- processes (native machine) --------------------------------------------------------
def attach_process(token: str, pid: int, follow_fork: bool) -> Call[tuple[int, ...]]:
    req = pb.AttachProcessRequest(pid=pid, follow_fork=follow_fork)
    return Call("broker", "AttachProcess", req, lambda r: tuple(r.tids), token=token)


def launch_process(
    token: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    follow_fork: bool,
) -> Call[int]:
    """The program runs as the broker's child: by default with this process's environment and
    working directory, as if started from here."""
    if isinstance(argv, str):
        raise TypeError("argv is a sequence of strings, not one string")
    req = pb.LaunchProcessRequest(
        argv=list(argv),
        env=dict(os.environ if env is None else env),
        cwd=os.getcwd() if cwd is None else cwd,
        follow_fork=follow_fork,
    )
    return Call("broker", "LaunchProcess", req, lambda r: int(r.pid), token=token)


def release_process(token: str, pid: int) -> Call[None]:
    req = pb.ReleaseProcessRequest(pid=pid)
    return Call("broker", "ReleaseProcess", req, _nothing, token=token)


def detach_process(token: str, pid: int) -> Call[bool]:
    req = pb.DetachProcessRequest(pid=pid)
    return Call("broker", "DetachProcess", req, lambda r: bool(r.released), token=token)


# --- simulated machine -----------------------------------------------------------------
def sim_spawn(threads: int) -> Call[m.SpawnedProcess]:
    req = simpb.SpawnProcessRequest(threads=threads)
    return Call("sim", "SpawnProcess", req, cv.spawned_from_pb)


def sim_spawn_thread(pid: int) -> Call[int]:
    return Call("sim", "SpawnThread", simpb.SpawnThreadRequest(pid=pid), lambda r: int(r.tid))


def sim_end_thread(tid: int) -> Call[None]:
    return Call("sim", "EndThread", simpb.EndThreadRequest(tid=tid), _nothing)


def sim_end_process(pid: int, exit_code: int) -> Call[None]:
    req = simpb.EndProcessRequest(pid=pid, exit_code=exit_code)
    return Call("sim", "EndProcess", req, _nothing)


def sim_touch(
    pid: int,
    address: int,
    access: m.Access | str,
    value: int | bytes | None,
    tid: int,
    size: int,
    ip: int,
) -> Call[m.TouchResult]:
    """One access by a simulated thread. An int value takes ``size`` bytes (8 if 0)."""
    req = simpb.TouchRequest(
        pid=pid,
        tid=tid,
        address=address,
        access=cv.access_to_pb(parse_access(access)),
        value=b"" if value is None else value_bytes(value, size),
        size=size,
        ip=ip,
    )
    return Call("sim", "Touch", req, cv.touch_from_pb)


def resolve_location(token: str, pid: int, location: str, access: m.Access) -> Call[m.Resolution]:
    req = pb.ResolveLocationRequest(pid=pid, location=location, access=cv.access_to_pb(access))
    return Call(
        "broker", "ResolveLocation", req, lambda r: cv.resolution_from_pb(r.resolution), token=token
    )
