"""Known-answer tests of the BPF assembler (issue 11 item 1: the program is built in Python).

Expected bytes are written out by hand from the kernel's instruction encoding
(Documentation/bpf/standardization/instruction-set.rst): opcode byte, then
``dst | src << 4``, then the 16-bit offset and the 32-bit immediate, little-endian.
"""

from __future__ import annotations

import pytest

from hwbkptd.arch.bpf.asm import (
    FP,
    R0,
    R1,
    R2,
    R6,
    R7,
    R8,
    Helper,
    Label,
    add,
    assemble,
    atomic_add,
    atomic_fetch_add,
    atomic_xchg,
    call,
    exit_,
    ja,
    jmp,
    ld_imm64,
    ld_map_fd,
    ldx,
    mov,
    rsh,
    st,
    stx,
    sub,
)


def hexes(code: bytes) -> list[str]:
    return [code[i : i + 8].hex(" ") for i in range(0, len(code), 8)]


@pytest.mark.parametrize(
    ("insn", "expected"),
    [
        (mov(R0, 0), "b7 00 00 00 00 00 00 00"),  # BPF_ALU64|BPF_MOV|BPF_K
        (mov(R6, R1), "bf 16 00 00 00 00 00 00"),  # BPF_ALU64|BPF_MOV|BPF_X, src r1 dst r6
        (add(R2, -8), "07 02 00 00 f8 ff ff ff"),  # r2 += -8
        (rsh(R0, 32), "77 00 00 00 20 00 00 00"),
        (exit_(), "95 00 00 00 00 00 00 00"),
        (call(Helper.RINGBUF_OUTPUT), "85 00 00 00 82 00 00 00"),  # helper 130
        (call(Helper.GET_ATTACH_COOKIE), "85 00 00 00 ae 00 00 00"),  # helper 174
        (ldx(8, R1, R6, 128), "79 61 80 00 00 00 00 00"),  # BPF_LDX|BPF_MEM|BPF_DW
        (ldx(4, R1, R0, 0), "61 01 00 00 00 00 00 00"),  # BPF_W
        (stx(8, FP, -8, R0), "7b 0a f8 ff 00 00 00 00"),  # BPF_STX|BPF_MEM|BPF_DW
        (stx(4, FP, -16, R1), "63 1a f0 ff 00 00 00 00"),
        (st(8, FP, -24, 0), "7a 0a e8 ff 00 00 00 00"),  # BPF_ST|BPF_MEM|BPF_DW
        (atomic_add(8, R8, 40, R1), "db 18 28 00 00 00 00 00"),  # BPF_ATOMIC, imm BPF_ADD
        (atomic_fetch_add(8, R8, 32, R1), "db 18 20 00 01 00 00 00"),  # | BPF_FETCH
        (atomic_xchg(8, R0, 0, R7), "db 70 00 00 e1 00 00 00"),  # BPF_XCHG | BPF_FETCH
        (sub(R1, R2), "1f 21 00 00 00 00 00 00"),  # BPF_ALU64|BPF_SUB|BPF_X
    ],
)
def test_item1_known_encodings(insn: object, expected: str) -> None:
    assert hexes(assemble([insn]))[0] == expected  # type: ignore[list-item]


def test_item1_ld_imm64_takes_two_slots() -> None:
    assert hexes(assemble([ld_imm64(R1, 0x1122334455667788)])) == [
        "18 01 00 00 88 77 66 55",
        "00 00 00 00 44 33 22 11",
    ]


def test_item1_map_fd_is_a_pseudo_source() -> None:
    # BPF_PSEUDO_MAP_FD (1) in the src nibble; the fd in the immediate.
    assert hexes(assemble([ld_map_fd(R1, 5)])) == [
        "18 11 00 00 05 00 00 00",
        "00 00 00 00 00 00 00 00",
    ]


def test_item1_jumps_resolve_labels_forward_and_back() -> None:
    code = assemble(
        [
            Label("top"),
            jmp("jeq", R0, 0, "end"),  # skips the next two instructions
            mov(R0, 1),
            ja("top"),  # back to slot 0 from slot 2: offset -3
            Label("end"),
            exit_(),
        ]
    )
    assert hexes(code) == [
        "15 00 02 00 00 00 00 00",
        "b7 00 00 00 01 00 00 00",
        "05 00 fd ff 00 00 00 00",
        "95 00 00 00 00 00 00 00",
    ]


def test_item1_jump_over_ld_imm64_counts_its_two_slots() -> None:
    code = assemble([jmp("jne", R1, R2, "end"), ld_imm64(R0, 1), Label("end"), exit_()])
    assert hexes(code)[0] == "5d 21 02 00 00 00 00 00"


def test_item1_bad_programs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        assemble([ja("nowhere")])
    with pytest.raises(ValueError, match="twice"):
        assemble([Label("a"), Label("a"), exit_()])
    with pytest.raises(ValueError, match="32 bits"):
        mov(R0, 2**40)
