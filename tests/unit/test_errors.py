"""Errors cross the wire as (code, message, fields) and come back as the same type."""

from __future__ import annotations

from typing import Any

import pytest

from motes import errors
from motes.errors import (
    BadApp,
    BadArgument,
    BadMessage,
    CallTimeout,
    EncodeError,
    FatalError,
    MeshNotRunning,
    MotesError,
    NoInstance,
    OverBudget,
    PayloadTooLarge,
    RemoteError,
    RequestError,
    RetryableError,
    StartupError,
    TransportError,
    UnknownMote,
    error_from_wire,
)
from motes.wire.codec import decode_reply, encode_error, raise_for

EXAMPLES: list[MotesError] = [
    MotesError("something"),
    RetryableError("later"),
    TransportError("lattice unreachable"),
    CallTimeout("a.m", 2.5),
    NoInstance("a.m"),
    NoInstance("a.m", "no node has a gpu"),
    RequestError("wrong"),
    UnknownMote("a.m"),
    UnknownMote("a.m", ["a.x", "b.y"]),
    EncodeError("argument 1", "object", "unsupported"),
    BadArgument("a.m", "x must be int"),
    PayloadTooLarge("the call to a.m", 2_000_000, 1_048_576),
    BadMessage("garbage"),
    BadApp("no app here"),
    MeshNotRunning("no mesh at ~/.motes"),
    RemoteError("a.m", "KeyError", "'k'", "Traceback ...\nKeyError: 'k'\n", "n1"),
    OverBudget("pada", "nbox", "cpu_s_per_day", 61.5, 60),
    FatalError("broken"),
    StartupError("nats-server did not start"),
]


def _same(a: MotesError, b: MotesError) -> None:
    assert type(b) is type(a) or isinstance(b, type(a))
    assert b.code == a.code
    assert str(b) == str(a)
    assert b.wire_fields() == a.wire_fields()


@pytest.mark.parametrize("original", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_is_rebuilt_from_its_wire_form(original: MotesError) -> None:
    rebuilt = error_from_wire(original.code, original.message, original.wire_fields())

    _same(original, rebuilt)


@pytest.mark.parametrize("original", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_survives_an_err_reply(original: MotesError) -> None:
    with pytest.raises(MotesError) as caught:
        raise_for(decode_reply(encode_error(original)))

    _same(original, caught.value)


def test_every_error_type_has_its_own_code() -> None:
    types = [t for t in vars(errors).values() if isinstance(t, type) and issubclass(t, MotesError)]
    assert len({t.code for t in types}) == len(types) == len(errors.__all__) - 1


@pytest.mark.parametrize(
    ("error", "builtins"),
    [
        (TransportError("x"), (RetryableError, ConnectionError)),
        (CallTimeout("a.m", 1), (RetryableError, TimeoutError)),
        (UnknownMote("a.m"), (RequestError, LookupError)),
        (EncodeError("argument 0", "object"), (RequestError, TypeError)),
        (BadArgument("a.m", "x"), (RequestError, TypeError)),
        (PayloadTooLarge("x", 2, 1), (RequestError, ValueError)),
        (BadMessage("x"), (RequestError, ValueError)),
        (BadApp("x"), (RequestError, ValueError)),
        (StartupError("x"), (FatalError,)),
    ],
)
def test_errors_are_also_the_builtin_they_mean(error: MotesError, builtins: tuple) -> None:
    assert isinstance(error, builtins)


@pytest.mark.parametrize(
    ("type_name", "builtin"),
    [
        ("ValueError", ValueError),
        ("KeyError", KeyError),
        ("ZeroDivisionError", ZeroDivisionError),
        ("TypeError", TypeError),
        ("RuntimeError", RuntimeError),
    ],
)
def test_a_remote_builtin_error_is_catchable_as_that_builtin(type_name: str, builtin: type) -> None:
    remote = RemoteError("a.m", type_name, "boom", "Traceback (most recent call last):\n  boom\n")

    rebuilt = error_from_wire(remote.code, remote.message, remote.wire_fields())

    assert isinstance(rebuilt, RemoteError)
    assert isinstance(rebuilt, builtin)
    assert rebuilt.type_name == type_name
    with pytest.raises(builtin):
        raise rebuilt


def test_a_remote_error_shows_the_remote_traceback() -> None:
    tb = 'Traceback (most recent call last):\n  File "app.py", line 3\nValueError: bad\n'
    remote = RemoteError("a.m", "ValueError", "bad", tb, "n1")

    rebuilt = error_from_wire(remote.code, remote.message, remote.wire_fields())

    assert str(rebuilt) == (
        "a.m raised ValueError on n1: bad\n--- remote traceback ---\n" + tb.rstrip()
    )


@pytest.mark.parametrize("type_name", ["MyAppError", "OSError", "SystemExit", "", "__class__"])
def test_other_remote_types_stay_plain_remote_errors(type_name: str) -> None:
    remote = RemoteError("a.m", type_name, "boom")

    rebuilt = error_from_wire(remote.code, remote.message, remote.wire_fields())

    assert type(rebuilt) is RemoteError
    assert str(rebuilt) == f"a.m raised {type_name}: boom"


@pytest.mark.parametrize(
    ("code", "fields", "expected"),
    [
        ("from_the_future", {}, MotesError),
        ("from_the_future", {"mote": "a.m"}, MotesError),
        ("timeout", {"unexpected": 1}, MotesError),  # fields that do not fit the type
        ("remote", {"unexpected": 1}, RemoteError),
    ],
)
def test_what_cannot_be_rebuilt_still_carries_its_message(
    code: str, fields: dict[str, Any], expected: type
) -> None:
    rebuilt = error_from_wire(code, "the original message", fields)

    assert type(rebuilt) is expected
    assert "the original message" in str(rebuilt)


def test_messages_say_what_to_do() -> None:
    assert str(UnknownMote("a.m")) == "unknown mote 'a.m'; `motes apps` lists what is deployed"
    assert str(UnknownMote("a.m", ["a.x"])) == "unknown mote 'a.m'; deployed: a.x"
    assert str(NoInstance("a.m")) == (
        "mote a.m has no running instance (see `motes ps` and `motes why a.m`)"
    )
    assert "pass large data through the store" in str(PayloadTooLarge("x", 2, 1))


def test_sandbox_errors_cross_the_wire_with_their_fields() -> None:
    from motes.errors import SandboxDenied, SandboxLimit, SandboxUnavailable

    limit = SandboxLimit("grep", "memory", 64.5, 64, "MiB")
    assert str(limit) == "grep exceeded its memory limit: used 64.5 MiB (allowed 64)"
    for err in (limit, SandboxDenied("/proc", "a system path"), SandboxUnavailable("no bwrap")):
        back = error_from_wire(err.code, err.message, err.wire_fields())
        assert type(back) is type(err) and back.message == err.message
    assert isinstance(SandboxDenied("x", "y"), PermissionError)
