"""hwbkptd.core.names: which member a hit wrote (issue 13 item 2), known answers."""

from __future__ import annotations

from hwbkptd.core.names import Member, Resolved, member_written

CFG = Resolved(
    location="&cfg",
    address=0x1000,
    length=24,
    symbol="cfg",
    members=(
        Member(0, 4, "cfg.mode"),
        Member(4, 4, "cfg.flags"),
        Member(8, 8, "cfg.limit"),
        Member(16, 8, "cfg.tag"),
    ),
)


def region(**fields: int) -> bytes:
    data = bytearray(24)
    offsets = {"mode": (0, 4), "flags": (4, 4), "limit": (8, 8), "tag": (16, 8)}
    for name, value in fields.items():
        off, size = offsets[name]
        data[off : off + size] = value.to_bytes(size, "little")
    return bytes(data)


def test_item2_the_member_whose_bytes_changed() -> None:
    assert member_written(CFG, (0x1008, 8), region(limit=7), region()) == "cfg.limit"
    assert member_written(CFG, (0x1000, 8), region(flags=2), region()) == "cfg.flags"
    assert member_written(CFG, (0x1000, 8), region(mode=3, flags=2), region(flags=2)) == "cfg.mode"
    assert member_written(CFG, (0x1010, 8), region(tag=65), region()) == "cfg.tag"


def test_item2_two_members_changed_at_once() -> None:
    assert member_written(CFG, (0x1000, 8), region(mode=1, flags=1), region()) == (
        "cfg.mode,cfg.flags"
    )


def test_item2_no_change_names_what_the_chunk_covers() -> None:
    same = region(limit=5)
    assert member_written(CFG, (0x1000, 8), same, same) == "cfg.mode,cfg.flags"
    assert member_written(CFG, (0x1008, 8), same, same) == "cfg.limit"
    assert member_written(CFG, (0x1008, 8), same, b"") == "cfg.limit"


def test_item2_a_scalar_names_no_member() -> None:
    counter = Resolved(location="counter", address=0x2000, length=8, symbol="counter")
    assert member_written(counter, (0x2000, 8), b"\x01" + bytes(7), bytes(8)) == ""
