"""Issue 15, item 1: the DAP adapter's translations (hwbkpt.dap._mapping), known answers."""

from __future__ import annotations

import pytest

from hwbkpt import models as m
from hwbkpt.dap._mapping import (
    DataId,
    HitRule,
    access_of,
    data_id_of,
    displaced_message,
    hit_output,
    parse_data_id,
    parse_hit_condition,
    parse_value_condition,
)


def test_item1_data_id_by_address_and_bytes_round_trips() -> None:
    data = data_id_of("0x601040", 4, True)
    assert data == DataId(length=4, address=0x601040)
    assert data.text() == "addr:0x601040:4"
    assert parse_data_id(data.text()) == data
    assert data_id_of("6295616", None, False) == DataId(length=8, address=0x601040)


def test_item1_data_id_by_name_goes_to_the_broker() -> None:
    data = data_id_of("&cfg.limit", None, False)
    assert data == DataId(length=0, symbol="&cfg.limit")
    assert data.text() == "sym:&cfg.limit:0"
    assert data.describe() == "&cfg.limit (the size of its type)"
    assert parse_data_id(data.text()) == data
    assert parse_data_id("sym:libc.so.6!environ:8") == DataId(length=8, symbol="libc.so.6!environ")


@pytest.mark.parametrize(
    ("name", "size", "as_address", "field"),
    [
        ("counter", 8, True, "name"),
        ("0x10", 0, True, "bytes"),
        ("0x10", 33, True, "bytes"),
        ("a b", 8, False, "name"),
        ("-5", 8, False, "name"),
    ],
)
def test_item1_bad_data_ids_name_the_field(
    name: str, size: int, as_address: bool, field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        data_id_of(name, size, as_address)


def test_item1_foreign_data_id_is_refused() -> None:
    with pytest.raises(ValueError, match="dataId"):
        parse_data_id("gdb:counter")


def test_item1_access_types() -> None:
    assert access_of("read") is m.Access.READ
    assert access_of("write") is m.Access.WRITE
    assert access_of("readWrite") is m.Access.READ_WRITE
    assert access_of(None) is m.Access.WRITE
    with pytest.raises(ValueError, match="accessType"):
        access_of("exec")


def test_item1_conditions_become_value_filters() -> None:
    assert parse_value_condition("", 8) == m.Filter()
    assert parse_value_condition("changed", 8) == m.Filter(changed_only=True)
    assert parse_value_condition("== 5", 4) == m.Filter(equals=b"\x05\0\0\0")
    assert parse_value_condition("value == 0x102", 2) == m.Filter(equals=b"\x02\x01")
    assert parse_value_condition("7", 1) == m.Filter(equals=b"\x07")
    with pytest.raises(ValueError, match="condition"):
        parse_value_condition("x > 3", 8)
    with pytest.raises(ValueError, match="fit"):
        parse_value_condition("== 256", 1)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", HitRule()),
        ("3", HitRule(ignore_first=2)),
        (">= 3", HitRule(ignore_first=2)),
        ("> 3", HitRule(ignore_first=3)),
        ("ignore 4", HitRule(ignore_first=4)),
        ("== 2", HitRule(ignore_first=1, stop_after=1)),
        ("% 3", HitRule(every=3)),
        ("every 5", HitRule(every=5)),
        ("stop after 2", HitRule(stop_after=2)),
    ],
)
def test_item1_hit_conditions(text: str, rule: HitRule) -> None:
    assert parse_hit_condition(text) == rule


@pytest.mark.parametrize("text", ["0", "% 0", "== 0", "< 3", "every", "stop after 0"])
def test_item1_bad_hit_conditions(text: str) -> None:
    with pytest.raises(ValueError, match="hitCondition"):
        parse_hit_condition(text)


def test_item1_displaced_message_names_session_and_priority() -> None:
    ev = m.Displaced(tids=(7,), by_breakpoint_id=9, by_session="rival", by_priority=75)
    text = displaced_message(ev)
    assert "session 'rival'" in text
    assert "breakpoint 9" in text
    assert "priority 75" in text


def test_item1_notify_hit_output_has_value_and_old_value() -> None:
    hit = m.Hit(
        pid=1,
        tid=2,
        cpu=0,
        ip=0x401178,
        address=0x4040C0,
        access=m.Access.WRITE,
        value=(3).to_bytes(8, "little"),
        old_value=(2).to_bytes(8, "little"),
        hit_count=3,
        generation=1,
    )
    line = hit_output(4, hit, "bump+0x12")
    assert line == (
        "data breakpoint 4: write of 0x4040c0 by thread 2 at bump+0x12: value 3 (0x3) "
        "(was 2 (0x2))\n"
    )
