"""``Adapter``: one DAP client's requests, carried out with a broker session.

The request loop runs on the caller's thread; the session's events are turned into DAP
events on a second thread (``EventPump``, in ``_events``). Both write through one ``Wire``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from hwbkpt import models as m
from hwbkpt._args import parse_action, parse_priority
from hwbkpt.client import Client
from hwbkpt.dap._events import EventPump, Stops
from hwbkpt.dap._mapping import ACCESS_TYPES, data_id_of, describe_resolution
from hwbkpt.dap._watches import Watches, build_spec
from hwbkpt.dap._wire import Message, ProtocolError, Wire, read_message
from hwbkpt.errors import HwbkptError
from hwbkpt.session import Session

__all__ = ["CAPABILITIES", "Adapter"]

#: What ``initialize`` announces.
CAPABILITIES: dict[str, Any] = {
    "supportsConfigurationDoneRequest": True,
    "supportsDataBreakpoints": True,
    "supportsDataBreakpointBytes": True,
    "supportsConditionalBreakpoints": True,
    "supportsHitConditionalBreakpoints": True,
    "supportTerminateDebuggee": True,
}
#: An editor's data breakpoints outrank ordinary watches (normal, 25), not high ones (75).
DEFAULT_PRIORITY = "debugger"
_VARIABLES_BASE = 1_000_000  # variablesReference of a stopped thread's hit: base + tid


class _Refused(Exception):
    """A request this adapter cannot carry out; the message goes to the user."""


class Adapter:
    """Serves one DAP client over ``wire``; ``server`` is the broker's address."""

    def __init__(self, wire: Wire, server: str | None = None) -> None:
        self._wire = wire
        self._server = server
        self._client: Client | None = None
        self._session: Session | None = None
        self._pid = 0
        self._launched = False
        self._priority = parse_priority(DEFAULT_PRIORITY) or 0
        self._action = m.Action.HALT
        self._watches = Watches()
        self._stops = Stops()
        self._pump_thread: threading.Thread | None = None
        self._done = False
        self._handlers: dict[str, Callable[[Message], Message | None]] = {
            "initialize": self._initialize,
            "attach": self._attach,
            "launch": self._launch,
            "configurationDone": self._configuration_done,
            "dataBreakpointInfo": self._data_breakpoint_info,
            "setDataBreakpoints": self._set_data_breakpoints,
            "setBreakpoints": self._set_source_breakpoints,
            "setExceptionBreakpoints": lambda _req: {"breakpoints": []},
            "setFunctionBreakpoints": self._set_source_breakpoints,
            "threads": self._threads,
            "stackTrace": self._stack_trace,
            "scopes": self._scopes,
            "variables": self._variables,
            "continue": self._continue,
            "disconnect": self._disconnect,
            "terminate": self._disconnect,
        }

    # --- the loop ------------------------------------------------------------------------
    def run(self, stream: BinaryIO) -> None:
        """Answer requests read from ``stream`` until disconnect or its end."""
        try:
            while not self._done:
                try:
                    message = read_message(stream)
                except ProtocolError as err:
                    self._wire.event("output", {"category": "stderr", "output": f"{err}\n"})
                    break
                if message is None:
                    break
                if message.get("type") == "request":
                    self.handle(message)
        finally:
            self._end_session()

    def handle(self, request: Message) -> None:
        command = str(request.get("command", ""))
        handler = self._handlers.get(command)
        if handler is None:
            self._wire.fail(request, f"{command}: not supported by the hwbkpt adapter")
            return
        try:
            body = handler(request)
        except HwbkptError as err:
            details = "".join(
                f"; {v.field}: {v.description}"
                for v in err.field_violations
                if v.field not in err.message
            )
            self._wire.fail(request, f"{err}{details}")
            return
        except (_Refused, ValueError) as err:
            self._wire.fail(request, str(err))
            return
        self._wire.respond(request, body)
        if command == "initialize":
            self._wire.event("initialized")

    # --- session -------------------------------------------------------------------------
    def _open(self, args: Message, what: str) -> Session:
        if self._session is not None:
            raise _Refused(f"{what}: this adapter already debugs process {self._pid}")
        server = args.get("server") or self._server
        self._client = Client(str(server) if server else None)
        if "priority" in args:
            self._priority = parse_priority(args["priority"]) or 0
        if "action" in args:
            self._action = parse_action(str(args["action"]))
        name = str(args.get("name") or f"dap-{os.getpid()}")
        try:
            self._session = self._client.open_session(name)
        except BaseException:
            self._client.close()
            self._client = None
            raise
        return self._session

    def _start_pump(self, session: Session) -> None:
        pump = EventPump(self._wire, self._watches, self._stops, self._pid, self._resume)
        self._pump_thread = threading.Thread(
            target=pump.run, args=(session,), name="hwbkpt-dap", daemon=True
        )
        self._pump_thread.start()

    def _resume(self, tids: list[int]) -> None:
        if self._session is not None:
            self._session.resume_threads(tids)

    def _end_session(self) -> None:
        session, client = self._session, self._client
        self._session = self._client = None
        if session is not None:
            with contextlib.suppress(HwbkptError):
                session.close()
        if client is not None:
            client.close()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=5)

    def _need_session(self) -> Session:
        if self._session is None:
            raise _Refused("attach or launch first")
        return self._session

    # --- requests ------------------------------------------------------------------------
    def _initialize(self, _req: Message) -> Message:
        return dict(CAPABILITIES)

    def _attach(self, req: Message) -> Message | None:
        args = req.get("arguments") or {}
        try:
            pid = int(args.get("pid", args.get("processId", 0)))
        except (TypeError, ValueError):
            raise ValueError(f"pid: {args.get('pid')!r} is not a process id") from None
        if pid <= 0:
            raise ValueError("pid: give the process id to attach to")
        session = self._open(args, "attach")
        try:
            session.attach_process(pid, follow_fork=bool(args.get("followFork", False)))
        except BaseException:
            self._end_session()
            raise
        self._pid = pid
        self._start_pump(session)
        return None

    def _launch(self, req: Message) -> Message | None:
        args = req.get("arguments") or {}
        program = args.get("program")
        if not program:
            raise ValueError("program: give the program to launch")
        argv = [str(program), *(str(a) for a in args.get("args") or ())]
        env = args.get("env")
        session = self._open(args, "launch")
        try:
            self._pid = session.launch_process(
                argv,
                env={**os.environ, **{str(k): str(v) for k, v in env.items()}} if env else None,
                cwd=str(args["cwd"]) if args.get("cwd") else None,
                follow_fork=bool(args.get("followFork", False)),
            )
        except BaseException:
            self._end_session()
            raise
        self._launched = True
        self._start_pump(session)
        self._wire.event(
            "process",
            {"name": str(program), "systemProcessId": self._pid, "startMethod": "launch"},
        )
        return None

    def _configuration_done(self, _req: Message) -> Message | None:
        # A launched program was held at its first instruction so that the editor's data
        # breakpoints are in place before it runs; now it runs.
        if self._launched and self._session is not None:
            self._launched = False
            self._session.release_process(self._pid)
        return None

    def _data_breakpoint_info(self, req: Message) -> Message:
        args = req.get("arguments") or {}
        name = str(args.get("name", ""))
        raw = args.get("bytes")
        try:
            data = data_id_of(name, None if raw is None else int(raw), bool(args.get("asAddress")))
        except ValueError as err:
            return {"dataId": None, "description": str(err)}
        description = data.describe()
        if data.symbol and self._session is not None and self._pid:
            # Resolved by the broker now, so that the editor shows where the name is and a
            # name that is not there is refused here rather than at setDataBreakpoints.
            try:
                found = self._session.resolve_location(self._pid, data.symbol)
            except HwbkptError as err:
                return {"dataId": None, "description": f"{data.symbol}: {err.message}"}
            description = describe_resolution(found, data.length)
        return {
            "dataId": data.text(),
            "description": description,
            "accessTypes": list(ACCESS_TYPES),
            "canPersist": data.symbol != "",
        }

    def _set_data_breakpoints(self, req: Message) -> Message:
        args = req.get("arguments") or {}
        wanted = [dict(b) for b in args.get("breakpoints") or ()]
        session = self._need_session()

        def set_one(one: Message) -> Any:
            spec, data, rule = build_spec(
                one, pid=self._pid, priority=self._priority, action=self._action
            )
            return session.set_spec(spec), data, rule

        watches = self._watches.replace(wanted, set_one, session.remove)
        return {"breakpoints": [w.dap() for w in watches]}

    def _set_source_breakpoints(self, req: Message) -> Message:
        args = req.get("arguments") or {}
        given = args.get("breakpoints") or args.get("lines") or ()
        message = "hwbkpt gives data breakpoints only (watch a variable or an address)"
        return {"breakpoints": [{"verified": False, "message": message} for _ in given]}

    def _threads(self, _req: Message) -> Message:
        tids: set[int] = set()
        if self._client is not None and self._pid:
            slot_map = self._client.slot_map(self._pid)
            tids.update(t.tid for t in slot_map.threads if t.pid == self._pid and t.tid)
        tids.update(self._stops.tids())
        if not tids and self._pid:
            tids.add(self._pid)
        return {"threads": [{"id": tid, "name": f"thread {tid}"} for tid in sorted(tids)]}

    def _stack_trace(self, req: Message) -> Message:
        tid = int((req.get("arguments") or {}).get("threadId", 0))
        stop = self._stops.get(tid)
        if stop is None:
            return {"stackFrames": [], "totalFrames": 0}
        hit = stop.hit
        frame: Message = {
            "id": tid,
            "name": hit.ip_symbol or f"{hit.ip:#x}",
            "line": 0,
            "column": 0,
            "instructionPointerReference": f"{hit.ip:#x}",
        }
        source = _source_line(hit)
        if source is not None:
            frame["source"] = {"name": os.path.basename(source[0]), "path": source[0]}
            frame["line"] = source[1]
        return {"stackFrames": [frame], "totalFrames": 1}

    def _scopes(self, req: Message) -> Message:
        tid = int((req.get("arguments") or {}).get("frameId", 0))
        if self._stops.get(tid) is None:
            return {"scopes": []}
        ref = _VARIABLES_BASE + tid
        return {"scopes": [{"name": "Data breakpoint", "variablesReference": ref}]}

    def _variables(self, req: Message) -> Message:
        ref = int((req.get("arguments") or {}).get("variablesReference", 0))
        stop = self._stops.get(ref - _VARIABLES_BASE)
        if stop is None:
            return {"variables": []}
        hit = stop.hit
        rows = [
            ("value", _value(hit.value)),
            ("old value", _value(hit.old_value)),
            ("address", f"{hit.address:#x}"),
            ("access", hit.access.value if hit.access else "?"),
            ("hit count", str(hit.hit_count)),
            ("breakpoint", str(stop.breakpoint_id)),
        ]
        return {"variables": [{"name": n, "value": v, "variablesReference": 0} for n, v in rows]}

    def _continue(self, _req: Message) -> Message:
        session = self._need_session()
        self._stops.clear()
        session.resume_threads()
        return {"allThreadsContinued": True}

    def _disconnect(self, _req: Message) -> Message | None:
        self._done = True
        self._end_session()
        return None


def _source_line(hit: m.Hit) -> tuple[str, int] | None:
    """("file.c", 42) from the broker's ``ip_line`` (names issue), where it says."""
    # getattr: a broker and client without line tables (before issue 13) have no ip_line.
    text = str(getattr(hit, "ip_line", "") or "")
    file, _, line = text.rpartition(":")
    if not file or not line.isdigit():
        return None
    return file, int(line)


def _value(data: bytes) -> str:
    as_int = m.le_int(data)
    if as_int is not None:
        return f"{as_int} ({as_int:#x})"
    return data.hex() or "unknown"
