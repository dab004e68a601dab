"""The guest's pure-Python msgpack codec agrees with msgspec, value for value, both ways:
the host speaks msgspec to the guest, so any disagreement would change a wasm mote's
results. Also: what the decorator accepts for wasm motes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from motes import App
from motes.errors import BadApp
from motes.sandbox._guest import _msgpack

_atoms = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    _atoms,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner, max_size=20),
    max_leaves=60,
)


@given(values)
def test_round_trips_against_msgspec(value: Any) -> None:
    ours = _msgpack.encode(value)
    assert msgspec.msgpack.decode(ours) == value
    assert _msgpack.decode(msgspec.msgpack.encode(value)) == value
    assert ours == msgspec.msgpack.encode(value)  # the very same bytes


@pytest.mark.parametrize("n", [0, 15, 16, 31, 32, 255, 256, 65_535, 65_536, 70_000])
def test_every_length_boundary(n: int) -> None:
    value = [b"b" * n, "s" * n, list(range(n % 300)), {str(i): i for i in range(n % 40)}]
    assert _msgpack.encode(value) == msgspec.msgpack.encode(value)
    assert _msgpack.decode(msgspec.msgpack.encode(value)) == value


def test_out_of_range_and_unknown_types_fail_as_in_msgspec() -> None:
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(OverflowError):
            _msgpack.encode(bad)
    with pytest.raises(TypeError):
        _msgpack.encode(object())
    with pytest.raises(ValueError):
        _msgpack.decode(b"\xc1")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"fuel": 10}, "sandbox='wasm' motes only"),
        ({"sandbox": "docker"}, "'native' or 'wasm'"),
        ({"sandbox": "wasm", "fuel": 0}, "fuel must be an int >= 1"),
        ({"sandbox": "wasm", "memory_mb": 8}, "memory_mb must be an int >= 32"),
        ({"sandbox": "wasm", "files": {"data": "x"}}, "absolute guest path"),
        ({"sandbox": "wasm", "files": {"/": "x"}}, "absolute guest path"),
        ({"sandbox": "wasm", "files": {"/d/../e": "x"}}, "absolute guest path"),
        ({"sandbox": "wasm", "files": {"/d": "/etc"}}, "relative path"),
        ({"sandbox": "wasm", "files": {"/d": "a/../../b"}}, "relative path"),
        ({"sandbox": "wasm", "files": {"/d": "a"}, "writable": {"/d": "b"}}, "both"),
    ],
)
def test_wasm_options_are_checked(options: dict[str, Any], why: str) -> None:
    def task() -> None: ...

    with pytest.raises(BadApp, match=why.replace("(", r"\(")):
        App("checks").mote(**options)(task)


def test_wasm_motes_are_sync_functions() -> None:
    app = App("checks")

    async def later() -> None: ...

    with pytest.raises(BadApp, match="sync"):
        app.mote(sandbox="wasm")(later)

    with pytest.raises(BadApp, match="wasm actors"):
        app.actor(sandbox="wasm")(type("Counter", (), {}))

    def task() -> None: ...

    assert app.mote(sandbox="wasm", files={"/data": "in"})(task) is task
    declared = app.motes["task"].spec
    assert declared.sandbox == "wasm" and declared.fuel == 10**10 and declared.memory_mb == 256
    assert declared.files == {"/data": "in"} and declared.writable == {}
