"""The signed envelope: a record comes back only if its signature, context and signer all
check out; any damage is an IntegrityError, never a crash and never a half-trusted value."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motes.errors import IntegrityError
from motes.identity import KeyKind, Signed, SigningKey, open_signed, seal, sign, verify


class Record(msgspec.Struct, frozen=True, tag="rec1"):
    name: str
    seq: int
    labels: dict[str, str] = {}


KEY = SigningKey.generate(KeyKind.DATASET)
RECORD = Record("photos", 7, {"zone": "home"})
SEALED = seal(KEY, RECORD, context="rec1")


def test_a_sealed_record_opens_as_itself() -> None:
    assert open_signed(SEALED, Record, context="rec1") == RECORD
    assert open_signed(SEALED, Record, context="rec1", signer=KEY.fingerprint) == RECORD


def test_a_signature_made_for_one_context_does_not_verify_in_another() -> None:
    with pytest.raises(IntegrityError, match="signature does not match"):
        open_signed(SEALED, Record, context="app1")


def test_a_record_signed_by_someone_else_is_refused() -> None:
    other = SigningKey.generate(KeyKind.DATASET)
    with pytest.raises(IntegrityError, match="other than the one expected"):
        open_signed(SEALED, Record, context="rec1", signer=other.fingerprint)


def test_an_edited_body_or_a_swapped_key_is_refused() -> None:
    signed = sign(KEY, RECORD, context="rec1")
    edited = msgspec.msgpack.encode(Record("photos", 8, {"zone": "home"}))
    with pytest.raises(IntegrityError):
        verify(msgspec.structs.replace(signed, body=edited), Record, context="rec1")
    thief = SigningKey.generate(KeyKind.DATASET)
    with pytest.raises(IntegrityError):
        verify(msgspec.structs.replace(signed, key=thief.public), Record, context="rec1")


def test_a_validly_signed_body_of_the_wrong_type_is_refused() -> None:
    sealed = seal(KEY, {"not": "a record"}, context="rec1")
    with pytest.raises(IntegrityError, match="not a Record"):
        open_signed(sealed, Record, context="rec1")


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_mutated_envelopes_are_never_accepted(data: st.DataObject) -> None:
    """Random byte flips and truncations of a sealed record: refused, never crashing."""
    raw = bytearray(SEALED)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw) - 1))
        mutated = bytes(raw[:cut])
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
        mutated = bytes(raw)
    try:
        got = open_signed(mutated, Record, context="rec1", signer=KEY.fingerprint)
    except IntegrityError:
        return
    # A flip that msgpack reads back to the very same envelope is not a change at all.
    assert msgspec.msgpack.decode(mutated, type=Signed) == msgspec.msgpack.decode(
        SEALED, type=Signed
    )
    assert got == RECORD
