"""hwbkpt.cli._output: the JSON line format scripts rely on, and the plain text lines."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from hwbkpt import models as m
from hwbkpt.cli._output import (
    Printer,
    event_line,
    event_record,
    json_value,
    machine_lines,
    machine_record,
    slot_map_lines,
    thread_record,
)

_T = datetime(2026, 1, 1, tzinfo=UTC)


def _ev(payload: m.EventPayload, seq: int = 5, bp: int = 4) -> m.Event:
    return m.Event(seq=seq, time=_T, breakpoint_id=bp, payload=payload)


def _hit(value: bytes, old: bytes) -> m.Hit:
    return m.Hit(100, 101, -1, 0x401000, 0x601018, m.Access.WRITE, value, old, 2, 7)


def test_json_values() -> None:
    assert json_value(b"") is None
    assert json_value((42).to_bytes(8, "little")) == 42
    assert json_value(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09") == "010203040506070809"


def test_hit_record() -> None:
    rec = event_record(_ev(_hit((42).to_bytes(8, "little"), (7).to_bytes(8, "little"))))
    assert rec["event"] == "hit"
    assert (rec["breakpoint"], rec["seq"]) == (4, 5)
    assert (rec["pid"], rec["tid"], rec["address"], rec["ip"]) == (100, 101, 0x601018, 0x401000)
    assert (rec["value"], rec["old_value"], rec["hit_count"], rec["access"]) == (42, 7, 2, "write")
    assert "ip_symbol" not in rec


def test_displaced_restored_state_records() -> None:
    d = event_record(_ev(m.Displaced((101,), 9, "tracer", 75)))
    assert (d["event"], d["by_session"], d["by_priority"], d["tids"]) == (
        "displaced",
        "tracer",
        75,
        [101],
    )
    r = event_record(_ev(m.Restored((101,))))
    assert (r["event"], r["tids"]) == ("restored", [101])
    s = event_record(
        _ev(m.StateChanged(m.BreakpointState.INSTALLED, m.PendingReason.NONE, (101,), ()))
    )
    assert (s["event"], s["state"], s["reason"], s["installed_tids"]) == (
        "state",
        "installed",
        "none",
        [101],
    )


def test_item9_displaced_names_the_taken_chunk() -> None:
    taken = (m.Chunk("dr", 0x601000, 8, m.Access.WRITE),)
    ev = _ev(m.Displaced((101,), 9, "tracer", 75, taken))
    assert event_record(ev)["taken"] == [
        {"pool": "dr", "address": 0x601000, "length": 8, "access": "write"}
    ]
    assert event_line(ev).endswith("in tids 101  took 0x601000/8 write")
    assert event_record(_ev(m.Displaced((101,), 9, "tracer", 75)))["taken"] == []


def test_every_kind_has_its_name_breakpoint_and_seq() -> None:
    payloads: list[m.EventPayload] = [
        m.Removed("client"),
        m.HitsDropped(3),
        m.TargetExited(1, 2, 0),
        m.HaltTimeout(2, 1.5),
        m.TargetExec(1),
    ]
    for p in payloads:
        rec = event_record(_ev(p))
        assert rec["event"] == p.KIND
        assert (rec["breakpoint"], rec["seq"]) == (4, 5)
        json.dumps(rec)
        assert event_line(_ev(p)).startswith(f"#5    {p.KIND}")


def test_hit_line_is_readable() -> None:
    line = event_line(_ev(_hit((42).to_bytes(8, "little"), (7).to_bytes(8, "little"))))
    assert "value 42 (0x2a)" in line
    assert "old 7 (0x7)" in line
    assert "tid 101" in line


def test_printer_json_and_text() -> None:
    buf = io.StringIO()
    Printer(True, buf).emit({"a": 1}, "ignored")
    Printer(False, buf).emit({"a": 1}, ["one", "two"])
    assert buf.getvalue() == '{"a":1}\none\ntwo\n'


def _slot_map() -> m.SlotMap:
    chunk = m.Chunk("dr", 0x601000, 8, m.Access.WRITE)
    return m.SlotMap(
        threads=(
            m.ThreadSlots(
                100,
                100,
                3,
                (
                    m.Slot("dr", 0, chunk, (m.Holder(1, "ide", 25), m.Holder(5, "tracer", 75))),
                    m.Slot("dr", 1, None, ()),
                ),
            ),
        ),
        waiting=(),
    )


def test_slot_map_shows_shared_slot_with_two_holders() -> None:
    lines = slot_map_lines(_slot_map())
    assert lines[0] == "pid 100 tid 100  generation 3"
    assert "ide#1(25) tracer#5(75)" in lines[1]
    assert lines[2].split() == ["dr1", "free"]
    rec = thread_record(_slot_map().threads[0])
    assert [h["session"] for h in rec["slots"][0]["holders"]] == ["ide", "tracer"]
    assert rec["slots"][1]["chunk"] is None


def test_machine_lines_say_why_a_mechanism_is_missing() -> None:
    info = m.MachineInfo(
        machine="sim",
        arch="x86_64",
        pools=(m.Pool("dr", 4, (m.Access.EXEC, m.Access.WRITE)),),
        mechanisms=(m.Mechanism("ptrace", False, "simulated machine selected"),),
        arming="",
        notes=("read watches are emulated",),
        version="0.1.0",
        max_region_length=32,
    )
    text = "\n".join(machine_lines(info))
    assert "dr       4 slots (exec, write)" in text
    assert "ptrace       not available: simulated machine selected" in text
    assert "read watches are emulated" in text


def test_item12_info_lists_the_limits() -> None:
    info = m.MachineInfo(
        machine="sim",
        arch="x86_64",
        pools=(),
        mechanisms=(),
        arming="",
        notes=(),
        version="0.1.0",
        max_region_length=32,
        limits=(
            m.Limit("max_sessions_per_identity", 1024.0, "--max-sessions", "open sessions"),
            m.Limit("calls_per_second", 2.5, "--calls-per-second", "calls per second"),
        ),
    )
    text = "\n".join(machine_lines(info))
    assert "max_sessions_per_identity  1024       --max-sessions: open sessions" in text
    assert "calls_per_second           2.5" in text
    assert machine_record(info)["limits"] == {
        "max_sessions_per_identity": 1024,
        "calls_per_second": 2.5,
    }


def test_item7_a_hit_the_broker_could_not_tell_is_read_or_write_with_the_reason() -> None:
    seven = (7).to_bytes(8, "little")
    same = m.Hit(100, 101, -1, 0x401000, 0x601018, m.Access.READ_WRITE, seven, seven, 2, 7)
    unknown = m.Hit(100, 101, -1, 0x401000, 0x601018, m.Access.READ_WRITE, seven, b"", 1, 7)
    rec = event_record(_ev(same))
    assert (rec["access"], rec["access_reason"]) == (
        "read_or_write",
        "the value did not change: a read, or a store of the same value",
    )
    assert event_record(_ev(unknown))["access_reason"] == "the value before is unknown"
    assert "  read or write (same value) 0x601018  " in event_line(_ev(same))
    assert "  read or write (value before unknown) 0x601018  " in event_line(_ev(unknown))
    written = event_record(_ev(_hit(seven, bytes(8))))
    assert written["access"] == "write"
    assert "access_reason" not in written
