"""hwbkpt._credentials (issue 12): what a client presents."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbkpt._credentials import SESSION_TOKEN_KEY, Credentials, session_metadata
from hwbkpt.errors import HwbkptError


def test_item1_token_metadata_and_session_secret(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("abc\n")
    base = Credentials(token_file=str(token)).metadata()
    assert base == (("authorization", "Bearer abc"),)
    assert session_metadata(base, "s") == (*base, (SESSION_TOKEN_KEY, "s"))
    assert session_metadata(base, "") == base
    assert Credentials().metadata() == ()
    assert Credentials().channel_credentials() is None


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"cert": "c"}, "needs its key"),
        ({"cert": "c", "key": "k"}, "needs TLS"),
        ({"ca": "/no/such/ca"}, "ca /no/such/ca"),
    ],
)
def test_item1_incomplete_credentials_are_refused(kw: dict[str, str], says: str) -> None:
    with pytest.raises(HwbkptError, match=says) as info:
        Credentials(**kw).channel_credentials()
    assert info.value.code == "INVALID_ARGUMENT"


def test_item1_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "t"
    empty.write_text("\n")
    with pytest.raises(HwbkptError, match="is empty"):
        Credentials(token_file=str(empty)).metadata()
