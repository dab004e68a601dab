"""Keys on disk: created private, reloaded as the same identity, refused when exposed; one
fingerprint scheme for every kind of key."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from motes.errors import FatalError
from motes.identity import KeyKind, SigningKey, fingerprint, short_id, verify_signature


def test_a_new_key_is_created_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"

    key = SigningKey.load_or_create(path, KeyKind.NODE)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert re.fullmatch(r"n[a-z2-7]{12}", key.id)


def test_a_key_reloads_as_the_same_principal(tmp_path: Path) -> None:
    path = tmp_path / "node.key"

    first = SigningKey.load_or_create(path, KeyKind.NODE)
    again = SigningKey.load_or_create(path, KeyKind.NODE)

    assert (again.id, again.public) == (first.id, first.public)
    assert SigningKey.load_or_create(tmp_path / "other.key", KeyKind.NODE).id != first.id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    SigningKey.load_or_create(path, KeyKind.NODE)
    os.chmod(path, mode)

    with pytest.raises(FatalError, match=f"readable by others \\(mode {mode:o}\\); run `chmod 600"):
        SigningKey.load_or_create(path, KeyKind.NODE)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_damaged_key_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"x" * size)
    os.chmod(path, 0o600)

    with pytest.raises(FatalError, match="is damaged: expected 32 bytes"):
        SigningKey.load_or_create(path, KeyKind.NODE)


def test_a_signature_verifies_only_for_its_data_and_key() -> None:
    key = SigningKey.generate(KeyKind.NODE)
    other = SigningKey.generate(KeyKind.NODE)
    signature = key.sign(b"assignment")

    assert verify_signature(key.public, signature, b"assignment")
    assert not verify_signature(key.public, signature, b"assignmenT")
    assert not verify_signature(other.public, signature, b"assignment")
    assert not verify_signature(
        key.public, signature[:-1] + bytes([signature[-1] ^ 1]), b"assignment"
    )
    assert not verify_signature(key.public, b"short", b"assignment")
    assert not verify_signature(key.public[:31], signature, b"assignment")


@pytest.mark.parametrize("kind", list(KeyKind))
def test_every_kind_of_key_has_the_same_fingerprint_scheme(kind: KeyKind) -> None:
    key = SigningKey.generate(kind)

    assert key.id == short_id(kind, key.public)
    assert key.id.startswith(kind.value) and len(key.id) == 13
    assert key.fingerprint == fingerprint(key.public) and len(key.fingerprint) == 32
    assert fingerprint(b"\0" * 32) != fingerprint(b"\1" + b"\0" * 31)


def test_the_public_half_is_kept_beside_the_seed(tmp_path: Path) -> None:
    key = SigningKey.provision(tmp_path / "node.key", KeyKind.NODE)

    assert (tmp_path / "node.pub").read_bytes() == key.public
    assert SigningKey.from_seed(KeyKind.NODE, key.seed).public == key.public
