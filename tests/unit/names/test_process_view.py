"""hwbkptd.names.process_view: /proc/PID/maps text -> file mappings, known answers."""

from __future__ import annotations

from hwbkptd.names.process_view import Mapping, parse_maps

PAD = " " * 21
MAPS = "".join(
    line + "\n"
    for line in (
        f"55b6f89e9000-55b6f89eb000 r--p 00000000 fe:00 260131{PAD}/usr/bin/cat",
        f"55b6f89eb000-55b6f89f0000 r-xp 00002000 fe:00 260131{PAD}/usr/bin/cat",
        f"55b6f9a1c000-55b6f9a3d000 rw-p 00000000 00:00 0{PAD}     [heap]",
        "7f1a2c000000-7f1a2c021000 rw-p 00000000 00:00 0 ",
        f"7f1a2c200000-7f1a2c228000 r--p 00000000 fe:00 262292{PAD}"
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        f"7f1a2c400000-7f1a2c401000 r-xp 00001000 fe:00 1234{PAD}  "
        "/tmp/lib with space.so (deleted)",
        f"7ffd1c5e7000-7ffd1c5e9000 r-xp 00000000 00:00 0{PAD}     [vdso]",
    )
)


def test_item1_file_mappings_only_with_offsets() -> None:
    assert parse_maps(MAPS) == [
        Mapping(0x55B6F89E9000, 0x55B6F89EB000, 0, "/usr/bin/cat"),
        Mapping(0x55B6F89EB000, 0x55B6F89F0000, 0x2000, "/usr/bin/cat"),
        Mapping(0x7F1A2C200000, 0x7F1A2C228000, 0, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        Mapping(0x7F1A2C400000, 0x7F1A2C401000, 0x1000, "/tmp/lib with space.so"),
    ]
