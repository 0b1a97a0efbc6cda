"""``--notify`` choices (issue 11 item 7: every fallback can be forced)."""

from __future__ import annotations

from typing import cast

import pytest

from hwbkptd.arch.notify_choice import choose_notify
from hwbkptd.arch.perf.caps import PerfCaps
from hwbkptd.core.errors import InvalidArgument

#: Only carried through to the mechanism built later; never read here.
CAPS = cast(PerfCaps, object())


@pytest.mark.parametrize("name", ["ptrace", "sample"])
def test_item7_forced_fallbacks_need_no_probe(name: str) -> None:
    choice = choose_notify(name, CAPS)
    assert (choice.name, choice.bpf, choice.reason) == (name, False, "as asked")


def test_item7_unknown_choice_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        choose_notify("fast", CAPS)
    assert err.value.field == "notify"
