"""Issue 12, the policy's session-name right, everywhere other sessions' names could leak.

``bob`` may not see other sessions' names (the default), ``alice`` may. When alice's
requests displace bob's, bob learns that it was displaced, by which request and at what
priority, but not by whose session: not in the Displaced event, not in GetSlotMap, not in
WatchSlotMap (slot map, news, open sessions) and not in ``hwbkpt top``. Alice sees all.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from e2e_support import HWBKPT
from security_support import Secured

import hwbkpt

pytestmark = pytest.mark.e2e

SECRET = "alice-secret-name"
ADDRESS = 0x601000


def _displaced(s: hwbkpt.Session, timeout: float = 10.0) -> hwbkpt.Event:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = s.next_event(timeout=left)
        assert event is not None, "no displaced event"
        if event.kind == "displaced":
            return event
    raise AssertionError("no displaced event")


def _top(s: Secured, who: str, pid: int) -> str:
    argv = [
        str(HWBKPT), "--server", s.tcp, "--ca", str(s.pki.ca), "--token-file",
        str(s.tokens[who]), "top", "--pid", str(pid), "--duration", "1.5",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_item2_without_the_names_right_no_other_session_name_shows(secured: Secured) -> None:
    pid, _ = secured.daemon.spawn()
    with (
        secured.client("alice") as alice_c,
        secured.client("bob") as bob_c,
        alice_c.open_session(SECRET) as alice,
        bob_c.open_session("bob-s") as bob,
    ):
        bobs = bob.watch(ADDRESS, pid=pid, priority=50)
        # bob watches the slot map before the displacement, so its news carries it.
        updates = bob_c.watch_slot_map(pid, min_interval=0.05)
        first = next(updates)
        strong = [alice.watch(ADDRESS + 8 * (i + 1), pid=pid, priority=100) for i in range(4)]
        event = _displaced(bob)
        assert event.breakpoint_id == bobs.id
        payload = event.payload
        assert isinstance(payload, hwbkpt.Displaced)
        # bob learns it was displaced, by which request, at what priority ...
        assert payload.by_breakpoint_id in {b.id for b in strong}
        assert payload.by_priority == 100
        # ... and not by whose session.
        assert payload.by_session == "(other)"
        shown = bob_c.slot_map(pid)
        holders = [h for t in shown.threads for sl in t.slots for h in sl.holders]
        assert {h.session_name for h in holders} == {"(other)"}, shown
        assert SECRET not in repr(shown)
        seen = [first]
        deadline = time.monotonic() + 10
        while not any(n.event.kind == "displaced" for u in seen for n in u.news):
            assert time.monotonic() < deadline, "no displaced news in WatchSlotMap"
            seen.append(next(updates))
        updates.close()  # type: ignore[attr-defined]
        assert SECRET not in repr(seen)
        own = [n for u in seen for n in u.news if n.session_name == "bob-s"]
        assert any(n.event.kind == "displaced" for n in own)  # its own name still shows
        assert "(other)" in repr(seen[-1].sessions)
        top = _top(secured, "bob", pid)
        assert "(other)" in top
        assert "bob-s" in top
        assert SECRET not in top
        # alice may see names: hers and bob's show everywhere.
        assert "bob-s" in repr(alice_c.slot_map(pid)) or "bob-s" in repr(
            next(alice_c.watch_slot_map(pid)).sessions
        )
        assert SECRET in _top(secured, "alice", pid)
