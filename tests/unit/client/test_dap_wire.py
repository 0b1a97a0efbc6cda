"""Issue 15, item 1: DAP framing (hwbkpt.dap._wire)."""

from __future__ import annotations

import io

import pytest

from hwbkpt.dap._wire import ProtocolError, Wire, read_message


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_item1_reads_messages_in_order_then_end() -> None:
    stream = io.BytesIO(frame(b'{"seq":1,"type":"request"}') + frame(b'{"seq":2}'))
    assert read_message(stream) == {"seq": 1, "type": "request"}
    assert read_message(stream) == {"seq": 2}
    assert read_message(stream) is None


@pytest.mark.parametrize(
    "data",
    [b"Content-Length: x\r\n\r\n{}", frame(b"not json"), frame(b"[1]")],
)
def test_item1_bad_frames_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_message(io.BytesIO(data))


def test_item1_wire_numbers_responses_and_events() -> None:
    out = io.BytesIO()
    wire = Wire(out)
    wire.respond({"seq": 5, "command": "threads"}, {"threads": []})
    wire.event("initialized")
    wire.fail({"seq": 6, "command": "pause"}, "pause: not supported")
    out.seek(0)
    first, second, third = (read_message(out) for _ in range(3))
    assert first == {
        "seq": 1,
        "type": "response",
        "request_seq": 5,
        "command": "threads",
        "success": True,
        "body": {"threads": []},
    }
    assert second == {"seq": 2, "type": "event", "event": "initialized", "body": {}}
    assert third is not None
    assert third["success"] is False
    assert third["message"] == "pause: not supported"
