"""The Debug Adapter Protocol's framing: ``Content-Length: N\\r\\n\\r\\n`` then N bytes of JSON.

Messages are read from and written to binary streams (stdin/stdout, or a socket's files);
one ``Wire`` writes for every thread of the adapter, under a lock, so a message is never
interleaved with another.
"""

from __future__ import annotations

import json
import threading
from typing import Any, BinaryIO

__all__ = ["Message", "ProtocolError", "Wire", "read_message"]

Message = dict[str, Any]

_HEADER_LIMIT = 64 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a DAP message."""


def read_message(stream: BinaryIO) -> Message | None:
    """The next message, or ``None`` at the end of the stream."""
    length: int | None = None
    seen = 0
    while True:
        line = stream.readline(_HEADER_LIMIT)
        if not line:
            return None
        seen += len(line)
        if seen >= _HEADER_LIMIT:
            raise ProtocolError("header too long")
        text = line.decode("ascii", errors="replace").strip()
        if not text:
            if length is None:
                continue  # stray blank lines between messages are harmless
            break
        name, _, value = text.partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise ProtocolError(f"bad Content-Length {value.strip()!r}") from None
    body = stream.read(length)
    if len(body) < length:
        return None
    try:
        message = json.loads(body)
    except ValueError as err:
        raise ProtocolError(f"body is not JSON: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError("body is not a JSON object")
    return message


class Wire:
    """Writes numbered messages (``seq``) to one stream, from any thread."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._seq = 0
        self.closed = False

    def send(self, message: Message) -> None:
        with self._lock:
            if self.closed:
                return
            self._seq += 1
            body = json.dumps({"seq": self._seq, **message}).encode()
            try:
                self._stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                self._stream.flush()
            except (BrokenPipeError, ConnectionError, ValueError):
                self.closed = True  # the client went away; the reader sees the end too

    def event(self, name: str, body: Message | None = None) -> None:
        self.send({"type": "event", "event": name, "body": body or {}})

    def respond(self, request: Message, body: Message | None = None) -> None:
        self.send(
            {
                "type": "response",
                "request_seq": request.get("seq", 0),
                "command": request.get("command", ""),
                "success": True,
                "body": body or {},
            }
        )

    def fail(self, request: Message, message: str) -> None:
        self.send(
            {
                "type": "response",
                "request_seq": request.get("seq", 0),
                "command": request.get("command", ""),
                "success": False,
                "message": message,
                "body": {"error": {"id": 1, "format": message, "showUser": True}},
            }
        )
