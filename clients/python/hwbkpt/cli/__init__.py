"""``hwbkpt``: the broker's command line (``hwbkpt --help``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence

from hwbkpt.cli._commands import cmd_info, cmd_sim
from hwbkpt.cli._output import Printer, event_line, event_record
from hwbkpt.cli._parser import build_parser
from hwbkpt.cli._process import cmd_attach, cmd_launch
from hwbkpt.cli._slots import cmd_health, cmd_slots
from hwbkpt.cli._top import cmd_top
from hwbkpt.cli._watch import cmd_watch
from hwbkpt.client import Client
from hwbkpt.dap import serve_stdio, serve_tcp
from hwbkpt.errors import HwbkptError, SessionLostError

__all__ = ["build_parser", "event_line", "event_record", "main"]

# Status codes that mean "the broker could not be reached or failed", not "bad input".
_TRANSPORT_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL"}
)
_COMMANDS = {
    "info": cmd_info,
    "watch": cmd_watch,
    "attach": cmd_attach,
    "launch": cmd_launch,
    "sim": cmd_sim,
}
#: Commands that take several brokers (``--server A --server B``) and show them together.
_FLEET_COMMANDS: dict[str, Callable[[Sequence[Client], argparse.Namespace, Printer], int]] = {
    "slots": cmd_slots,
    "health": cmd_health,
    "top": cmd_top,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 broker failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "dap":
        # The adapter opens its own connection: an attach/launch configuration may name
        # the broker ("server"), and stdout is the protocol's, not a printer's.
        if args.port is not None:
            return serve_tcp(args.host, args.port, args.server)
        return serve_stdio(args.server)
    out = Printer(args.json)
    servers: list[str | None] = list(args.server or [None])
    if len(servers) > 1 and args.command not in _FLEET_COMMANDS:
        fleet = ", ".join(_FLEET_COMMANDS)
        print(
            f"error: --server: {args.command} talks to one broker ({fleet} take several)",
            file=sys.stderr,
        )
        return 2
    try:
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(
                    Client(
                        address,
                        ca=args.ca,
                        cert=args.cert,
                        key=args.key,
                        token_file=args.token_file,
                    )
                )
                for address in servers
            ]
            fleet_command = _FLEET_COMMANDS.get(args.command)
            if fleet_command is not None:
                return fleet_command(clients, args, out)
            return _COMMANDS[args.command](clients[0], args, out)
    except SessionLostError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except HwbkptError as err:
        print(f"error: {err}", file=sys.stderr)
        for v in err.field_violations:
            # The message usually names the field already; list any others it did not.
            if v.field not in err.message:
                print(f"error:   {v.field}: {v.description}", file=sys.stderr)
        return 1 if err.code in _TRANSPORT_CODES else 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): nothing left to say.
        return 0
