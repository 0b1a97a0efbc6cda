"""hwbkptd.core.launching: LaunchProcess arguments; attach errors named by the caller's field."""

from __future__ import annotations

import pytest

from hwbkptd.core.errors import (
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from hwbkptd.core.launching import MAX_ARGS, check_launch, spec_error


def test_a_good_launch_is_normalised() -> None:
    argv, env, cwd = check_launch(["/bin/prog", "-x", ""], {"PATH": "/bin", "EMPTY": ""}, "")
    assert argv == ("/bin/prog", "-x", "")
    assert env == {"PATH": "/bin", "EMPTY": ""}
    assert cwd == "/"


@pytest.mark.parametrize(
    ("argv", "env", "cwd", "field"),
    [
        ([], {}, "/", "argv"),
        ("/bin/true", {}, "/", "argv"),
        ([""], {}, "/", "argv"),
        (["/bin/true", 5], {}, "/", "argv"),
        (["a\0b"], {}, "/", "argv"),
        (["/bin/true"] * (MAX_ARGS + 1), {}, "/", "argv"),
        (["/bin/true"], {"A=B": "c"}, "/", "env"),
        (["/bin/true"], {"": "c"}, "/", "env"),
        (["/bin/true"], {"A": "c\0"}, "/", "env"),
        (["/bin/true"], [("A", "b")], "/", "env"),
        (["/bin/true"], {}, "tmp", "cwd"),
        (["/bin/true"], {}, "/t\0mp", "cwd"),
    ],
)
def test_bad_launches(argv: object, env: object, cwd: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_launch(argv, env, cwd)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(
    ("err", "kind", "field"),
    [
        (NotFound("pid", "no process 9"), NotFound, "spec.pid"),
        (InvalidArgument("pid", "a thread"), InvalidArgument, "spec.pid"),
        (PermissionDenied("ptrace refused"), PermissionDenied, "spec.pid"),
        (NotFound("spec.tid", "no thread"), NotFound, "spec.tid"),
    ],
)
def test_attach_errors_name_the_request_field(
    err: BrokerError, kind: type[BrokerError], field: str
) -> None:
    mapped = spec_error(err)
    assert type(mapped) is kind
    assert mapped.field == field  # type: ignore[attr-defined]
    assert mapped.message.endswith(err.message.split(": ")[-1])


def test_failed_precondition_is_kept_as_it_is() -> None:
    err = FailedPrecondition("traced by pid 42 (gdb)")
    assert spec_error(err) is err
