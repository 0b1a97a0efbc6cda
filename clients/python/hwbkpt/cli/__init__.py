"""``hwbkpt``: the broker's command line (``hwbkpt --help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hwbkpt.cli._commands import cmd_info, cmd_sim, cmd_slots
from hwbkpt.cli._output import Printer, event_line, event_record
from hwbkpt.cli._parser import build_parser
from hwbkpt.cli._process import cmd_attach, cmd_launch
from hwbkpt.cli._watch import cmd_watch
from hwbkpt.client import Client
from hwbkpt.errors import HwbkptError, SessionLostError

__all__ = ["build_parser", "event_line", "event_record", "main"]

# Status codes that mean "the broker could not be reached or failed", not "bad input".
_TRANSPORT_CODES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL"}
)
_COMMANDS = {
    "info": cmd_info,
    "slots": cmd_slots,
    "watch": cmd_watch,
    "attach": cmd_attach,
    "launch": cmd_launch,
    "sim": cmd_sim,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 broker failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Printer(args.json)
    try:
        with Client(
            args.server, ca=args.ca, cert=args.cert, key=args.key, token_file=args.token_file
        ) as client:
            return _COMMANDS[args.command](client, args, out)
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
