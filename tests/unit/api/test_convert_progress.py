"""Progress events (issue 14) from the core to the wire and into the client's model."""

from __future__ import annotations

import pytest

from hwbkpt import _convert as client_convert
from hwbkpt import models as m
from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert_events
from hwbkptd.core.events import Event, Progress, ProgressOperation


@pytest.mark.parametrize("operation", list(ProgressOperation))
def test_progress_crosses_the_wire_whole(operation: ProgressOperation) -> None:
    sent = Progress(operation, 42, "/bin/big", "debug info", 700, 1000, False)
    msg = convert_events.event_to_proto(Event(9, 1_700_000_000_000_000_000, 0, sent))
    assert msg.WhichOneof("kind") == "progress"
    ev = client_convert.event_from_pb(msg)
    assert ev is not None
    assert ev.kind == "progress"
    assert ev.payload == m.Progress(operation.value, 42, "/bin/big", "debug info", 700, 1000, False)


def test_every_progress_operation_has_its_own_wire_value() -> None:
    values = set(convert_events.PROGRESS_TO_WIRE.values())
    assert len(values) == len(ProgressOperation)
    assert values == {v for _, v in broker_pb2.ProgressOperation.items() if v}
