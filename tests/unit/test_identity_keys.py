"""Node keys on disk: created private, reloaded as the same identity, refused when exposed."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from motes.errors import FatalError
from motes.identity.keys import NodeKey, fingerprint


def test_a_new_key_is_created_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"

    key = NodeKey.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert re.fullmatch(r"n[a-z2-7]{12}", key.id)


def test_a_key_reloads_as_the_same_node(tmp_path: Path) -> None:
    path = tmp_path / "node.key"

    first = NodeKey.load_or_create(path)
    again = NodeKey.load_or_create(path)

    assert (again.id, again.public) == (first.id, first.public)
    assert NodeKey.load_or_create(tmp_path / "other.key").id != first.id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    NodeKey.load_or_create(path)
    os.chmod(path, mode)

    with pytest.raises(FatalError, match=f"readable by others \\(mode {mode:o}\\); run `chmod 600"):
        NodeKey.load_or_create(path)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_damaged_key_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"x" * size)
    os.chmod(path, 0o600)

    with pytest.raises(FatalError, match="is damaged: expected 32 bytes"):
        NodeKey.load_or_create(path)


def test_a_signature_verifies_only_for_its_data_and_key(tmp_path: Path) -> None:
    key = NodeKey.load_or_create(tmp_path / "a.key")
    other = NodeKey.load_or_create(tmp_path / "b.key")
    signature = key.sign(b"assignment")

    assert NodeKey.verify(key.public, signature, b"assignment")
    assert not NodeKey.verify(key.public, signature, b"assignmenT")
    assert not NodeKey.verify(other.public, signature, b"assignment")
    assert not NodeKey.verify(
        key.public, signature[:-1] + bytes([signature[-1] ^ 1]), b"assignment"
    )
    assert not NodeKey.verify(key.public, b"short", b"assignment")


def test_the_id_is_a_fingerprint_of_the_public_key(tmp_path: Path) -> None:
    key = NodeKey.load_or_create(tmp_path / "node.key")

    assert key.id == fingerprint(key.public)
    assert fingerprint(b"\0" * 32) != fingerprint(b"\1" + b"\0" * 31)


def test_a_malformed_public_key_does_not_verify(tmp_path: Path) -> None:
    key = NodeKey.load_or_create(tmp_path / "node.key")

    assert not NodeKey.verify(key.public[:31], key.sign(b"x"), b"x")
