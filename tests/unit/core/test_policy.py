"""hwbkptd.core.policy (issue 12): the policy file and the checks that read it."""

from __future__ import annotations

import pytest

from hwbkptd.core import policy
from hwbkptd.core.broker_types import Identity, SlotMapView, SlotView, ThreadSlotsView
from hwbkptd.core.errors import NotFound, PermissionDenied, ResourceExhausted
from hwbkptd.core.policy import PolicyError, ProcessFacts, parse_policy

TEXT = """
[unauthenticated]
methods = ["/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"]

[identities.dev]
uids = [1000]
pids = [42]
exe = ["/usr/bin/py*"]
max_priority = 40
halt = true
max_sessions = 2
"""


def test_item2_a_policy_gives_each_identity_its_rights_and_the_least_by_default() -> None:
    found = parse_policy(TEXT + "\n[identities.ro]\n")
    dev = found.identity("dev", "token")
    assert dev is not None
    assert (dev.target_uids, dev.target_pids, dev.target_exes) == ({1000}, {42}, ("/usr/bin/py*",))
    assert (dev.max_priority, dev.may_halt, dev.max_sessions, dev.via) == (40, True, 2, "token")
    ro = found.identity("ro", "certificate")
    assert ro is not None
    assert (ro.any_target, ro.may_kernel, ro.may_halt, ro.may_launch) == (False,) * 4
    assert not ro.sees_session_names
    assert found.identity("stranger", "token") is None
    # The local socket stays fully trusted unless the policy names it.
    assert found.identity("local", "local") == Identity()
    assert found.unauthenticated_methods == {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[identities.a]\nmax_priority = 101\n", "identities.a.max_priority: must be 0..100"),
        ("[identities.a]\nhalt = 1\n", "identities.a.halt: must be a bool"),
        ("[identities.a]\nflies = true\n", "unknown key 'flies'"),
        ("[identities.a]\nuids = [-1]\n", "identities.a.uids: -1 is not a whole number"),
        ("[identities.a]\nexe = ['bin/*']\n", "not an absolute path"),
        ("[identities.a]\nmax_sessions = 0\n", "max_sessions: must be at least 1"),
        ("[other]\n", "unknown table 'other'"),
        ("[unauthenticated]\nmethods = ['Open']\n", "not a full method name"),
        ("[identities.a\n", "not valid TOML"),
    ],
)
def test_item6_a_broken_policy_is_refused_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert message in str(info.value)


def _facts(uids: tuple[int, ...], exe: str = "/bin/x") -> object:
    return lambda pid: ProcessFacts(pid, uids, exe)


def test_item2_targets_by_uid_pid_and_executable() -> None:
    dev = parse_policy(TEXT).identity("dev", "token")
    assert dev is not None
    policy.check_target(dev, 7, _facts((1000, 1000, 1000)), "pid")  # type: ignore[arg-type]
    policy.check_target(dev, 42, _facts((0, 0, 0)), "pid")  # type: ignore[arg-type]
    policy.check_target(dev, 8, _facts((0, 0, 0), "/usr/bin/python3"), "pid")  # type: ignore[arg-type]
    for uids in ((0, 0, 0), (1000, 0, 1000)):  # a setuid program is root's too
        with pytest.raises(PermissionDenied) as info:
            policy.check_target(dev, 9, _facts(uids), "spec.pid")  # type: ignore[arg-type]
        assert info.value.field == "spec.pid"
    # Any process: the facts are not even read.
    policy.check_target(Identity(), 9, lambda pid: pytest.fail("read"), "pid")


def test_item2_sessions_priority_and_rights() -> None:
    dev = parse_policy(TEXT).identity("dev", "token")
    assert dev is not None
    policy.check_session_count(dev, 1)
    with pytest.raises(ResourceExhausted, match="at most 2 sessions"):
        policy.check_session_count(dev, 2)
    with pytest.raises(PermissionDenied, match="up to 40, not 50"):
        policy.check_priority_cap(dev, 50, "spec.priority")
    with pytest.raises(PermissionDenied, match="may not watch kernel"):
        policy.check_kernel(dev, "spec.scope")
    with pytest.raises(PermissionDenied, match="may not launch"):
        policy.check_launch(dev)
    assert policy.still_allowed(dev, kernel=False, priority=40, halts=True)
    assert not policy.still_allowed(dev, kernel=False, priority=41, halts=False)
    assert not policy.still_allowed(dev, kernel=True, priority=10, halts=False)


def test_item3_a_session_is_invisible_to_another_identity() -> None:
    alice, bob = Identity(name="alice"), Identity(name="bob")
    policy.check_session_owner(alice)  # the broker's own work: no caller
    with policy.calling(alice):
        policy.check_session_owner(alice)
    with policy.calling(bob), pytest.raises(NotFound) as info:
        policy.check_session_owner(alice)
    assert (info.value.field, info.value.message) == ("token", "no such session")


def test_item3_other_identities_session_names_are_hidden_unless_allowed() -> None:
    slot = SlotView(pool="dr", index=0, chunk=None, holders=((1, "mine", 25), (2, "theirs", 50)))
    view = SlotMapView(threads=(ThreadSlotsView(1, 1, 0, (slot,)),), waiting=())
    owners = {1: "bob", 2: "alice"}.__getitem__
    shown = policy.slot_map_for(Identity(name="bob", sees_session_names=False), view, owners)
    assert shown.threads[0].slots[0].holders == ((1, "mine", 25), (2, "(other)", 50))
    assert policy.slot_map_for(Identity(name="bob"), view, owners) == view
    assert policy.slot_map_for(None, view, owners) == view


def test_describe_rights_says_what_an_identity_may_do() -> None:
    dev = parse_policy(TEXT).identity("dev", "token")
    assert dev is not None
    assert policy.describe_rights(dev).startswith(
        "targets uids [1000], pids [42], exe ['/usr/bin/py*']; kernel no; priority <= 40; halt yes"
    )
