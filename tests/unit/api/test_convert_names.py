"""hwbkptd.api.convert_names: a resolution and a hit's words as protobuf (issue 13)."""

from __future__ import annotations

from hwbkpt.v1 import broker_pb2
from hwbkptd.api.convert_names import fill_hit_words, resolution_to_proto
from hwbkptd.core.events import Hit
from hwbkptd.core.model import Access
from hwbkptd.core.names import Member, Resolved


def test_item2_resolution_to_proto() -> None:
    r = Resolved(
        "&cfg", 0x55AA_0000_1120, 24, "cfg", "/bin/named-pie", "ab12", 0x55AA_0000_0000,
        "struct config", "named.c:30", (Member(0, 4, "cfg.mode"), Member(8, 8, "cfg.limit")),
    )  # fmt: skip
    msg = resolution_to_proto(r)
    assert msg is not None
    assert (msg.location, msg.address, msg.length, msg.symbol) == ("&cfg", r.address, 24, "cfg")
    assert (msg.module, msg.build_id, msg.load_bias) == ("/bin/named-pie", "ab12", r.load_bias)
    assert (msg.type_name, msg.source) == ("struct config", "named.c:30")
    assert [(m.offset, m.size, m.name) for m in msg.members] == [
        (0, 4, "cfg.mode"),
        (8, 8, "cfg.limit"),
    ]
    assert resolution_to_proto(None) is None


def test_item3_hit_words_to_proto() -> None:
    hit = Hit(1, 1, 0, 2, 3, Access.WRITE, b"", b"", 1, 1)
    hit.ip_line, hit.address_symbol, hit.member = "named.c:37", "counter", "cfg.limit"
    msg = broker_pb2.Hit()
    fill_hit_words(msg, hit)
    assert (msg.ip_line, msg.address_symbol, msg.member) == ("named.c:37", "counter", "cfg.limit")
