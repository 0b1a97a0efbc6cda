"""hwbkptd.api.socket_dir (issue 12, item 4): every level of the socket's directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwbkptd.api.socket_dir import UnsafePath, secure_directory, write_ready_file


def test_item4_missing_levels_are_made_with_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    secure_directory(str(target), 0o750, os.getgid())
    for level in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert os.stat(level).st_mode & 0o777 == 0o750
    secure_directory(str(target), 0o750, os.getgid())  # and again: all is checked, fine


@pytest.mark.parametrize(("mode", "says"), [(0o777, "writable by others"), (0o770, "its group")])
def test_item4_a_directory_others_can_write_is_refused(
    tmp_path: Path, mode: int, says: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafePath, match=says):
        secure_directory(str(shared), 0o750, os.getgid())
    # Above the socket's own directory the sticky bit makes it safe (as /tmp).
    shared.chmod(0o1777)
    secure_directory(str(shared / "mine"), 0o750, os.getgid())
    with pytest.raises(UnsafePath, match="writable by others"):
        secure_directory(str(shared), 0o750, os.getgid())


def test_item4_symbolic_links(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "run").mkdir(parents=True, mode=0o750)
    (tmp_path / "link").symlink_to(real)
    # A link above the socket's directory, in a level no one else writes: followed.
    secure_directory(str(tmp_path / "link" / "run"), 0o750, os.getgid())
    with pytest.raises(UnsafePath, match="is a symbolic link"):
        secure_directory(str(tmp_path / "link"), 0o750, os.getgid())
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafePath, match="not a directory"):
        secure_directory(str(tmp_path / "file" / "x"), 0o750, os.getgid())


def test_item4_the_ready_file_replaces_a_link_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    ready = tmp_path / "ready"
    ready.symlink_to(victim)
    write_ready_file(str(ready), "unix:/x\n")
    assert not ready.is_symlink()
    assert (ready.read_text(), victim.read_text()) == ("unix:/x\n", "keep\n")
