"""Protobuf for names (issue 13): a request's resolution and a hit's words.

Apart from ``convert`` so that the names' messages can grow without touching the
general converters.
"""

from __future__ import annotations

from hwbkpt.v1 import broker_pb2
from hwbkptd.core.events import Hit
from hwbkptd.core.names import Resolved

__all__ = ["fill_hit_words", "resolution_to_proto"]


def resolution_to_proto(resolved: Resolved | None) -> broker_pb2.Resolution | None:
    """The Resolution message of a request made by name; None for one made by address."""
    if resolved is None:
        return None
    return broker_pb2.Resolution(
        location=resolved.location,
        address=resolved.address,
        length=resolved.length,
        symbol=resolved.symbol,
        module=resolved.module,
        build_id=resolved.build_id,
        load_bias=resolved.load_bias & 0xFFFF_FFFF_FFFF_FFFF,
        type_name=resolved.type_name,
        source=resolved.source,
        members=[
            broker_pb2.Member(offset=m.offset, size=m.size, name=m.name) for m in resolved.members
        ],
    )


def fill_hit_words(msg: broker_pb2.Hit, hit: Hit) -> None:
    msg.ip_line = hit.ip_line
    msg.address_symbol = hit.address_symbol
    msg.member = hit.member
