"""Issue 15 (the API for every language): fixed sets are enums on the wire, durations are
google.protobuf.Duration, and the priority presets are named in the proto."""

from __future__ import annotations

from typing import get_args

import pytest
from google.protobuf.duration_pb2 import Duration

from hwbkpt import _calls as calls
from hwbkpt import _convert as cv
from hwbkpt import _wire_names as names
from hwbkpt import models as m
from hwbkpt.v1 import broker_pb2
from hwbkptd.api import convert, convert_events
from hwbkptd.core.errors import InvalidArgument
from hwbkptd.core.events import Event, Removed, RemovedReason


def test_item_enums_every_removed_reason_has_its_own_enum_value() -> None:
    # RemovedReason (the domain's Literal) is what mypy holds every removal to.
    reasons = get_args(RemovedReason)
    assert set(convert.REMOVED_TO_WIRE) == set(reasons)
    numbers = [convert.REMOVED_TO_WIRE[r] for r in reasons]
    assert len(set(numbers)) == len(reasons)
    assert broker_pb2.REMOVED_REASON_UNSPECIFIED not in numbers
    assert set(numbers) == set(broker_pb2.RemovedReason.values()) - {0}


@pytest.mark.parametrize("reason", get_args(RemovedReason))
def test_item_enums_removed_reason_round_trips_to_the_same_word(reason: RemovedReason) -> None:
    wire = convert_events.event_to_proto(Event(1, 0, 5, Removed(reason)))
    assert broker_pb2.RemovedReason.Name(wire.removed.reason) == f"REMOVED_REASON_{reason.upper()}"
    client = cv.event_from_pb(wire)
    assert client is not None
    assert client.payload == m.Removed(reason)


def test_item_enums_every_enum_value_has_a_client_word() -> None:
    for enum, word in (
        (broker_pb2.RemovedReason, names.removed_word),
        (broker_pb2.MachineKind, names.machine_word),
        (broker_pb2.MechanismName, names.mechanism_word),
        (broker_pb2.Arming, names.arming_word),
    ):
        for name, number in enum.items():
            if number:
                assert not word(number).isdigit(), name


def test_item_durations_are_read_as_seconds_and_malformed_ones_refused() -> None:
    assert convert.duration_from_proto(Duration(seconds=2, nanos=500_000_000), "lease") == 2.5
    assert convert.duration_from_proto(Duration(), "lease") == 0
    for bad in (Duration(seconds=-1), Duration(seconds=1, nanos=-1), Duration(nanos=10**9)):
        with pytest.raises(InvalidArgument) as err:
            convert.duration_from_proto(bad, "lease")
        assert err.value.field == "lease"


def test_item_client_durations_take_seconds_or_timedelta() -> None:
    from datetime import timedelta

    by_float = calls.watch_slot_map(0, 0.25)
    by_delta = calls.watch_slot_map(0, timedelta(milliseconds=250))
    assert by_float.min_interval.ToMilliseconds() == by_delta.min_interval.ToMilliseconds() == 250
    opened = calls.open_session("ide", timedelta(seconds=90), 0)
    assert isinstance(opened.request, broker_pb2.OpenSessionRequest)
    assert opened.request.lease.ToSeconds() == 90
    with pytest.raises(ValueError, match="must not be negative"):
        calls.watch_slot_map(0, -1.0)


def test_item_priority_presets_come_from_the_proto() -> None:
    assert dict(m.PRIORITY_PRESETS) == {"low": 10, "normal": 25, "debugger": 50, "high": 75}
    assert m.PRIORITY_PRESETS["debugger"] == broker_pb2.PRIORITY_PRESET_DEBUGGER
