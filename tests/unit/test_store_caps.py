"""Capability strings: round trips, authority only goes down, bad input is named."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motes.errors import BadCapability, UnknownCapability
from motes.store.caps import (
    DatasetReadCap,
    DatasetWriteCap,
    FileReadCap,
    FileVerifyCap,
    parse_cap,
    storage_index,
    tagged_hash,
)

keys = st.binary(min_size=32, max_size=32)


@given(keys, keys)
def test_file_caps_round_trip_and_derive_down(key: bytes, root: bytes) -> None:
    read = FileReadCap(key, root)
    assert str(read).startswith("motes:r1:")
    assert parse_cap(str(read)) == read
    verify = read.verify_cap()
    assert str(verify).startswith("motes:v1:")
    assert parse_cap(str(verify)) == verify
    assert verify == FileVerifyCap(storage_index(key), root)
    assert verify.si_bytes != key[:16]  # the read key does not leak down


def test_dataset_caps_derive_write_read_verify() -> None:
    write = DatasetWriteCap.generate()
    read = write.read_cap()
    assert str(write).startswith("motes:w1:") and str(read).startswith("motes:r1:")
    assert parse_cap(str(write)) == write
    assert parse_cap(str(read)) == read
    assert read.verify_cap() == write.verify_cap()
    assert isinstance(parse_cap(str(read)), DatasetReadCap)
    assert write.seed not in str(read).encode()


def test_tagged_hash_separates_tags_and_parts() -> None:
    assert tagged_hash("a", b"x") != tagged_hash("b", b"x")
    assert tagged_hash("a", b"ab", b"c") != tagged_hash("a", b"a", b"bc")


@pytest.mark.parametrize(
    "text, error, words",
    [
        ("", BadCapability, "expected motes:"),
        ("http://example", BadCapability, "expected motes:"),
        ("motes:r1:!!!!", BadCapability, "not base32"),
        ("motes:r1:aaaa", BadCapability, "too short"),
        ("motes:r2:aaaaaaaaaaaaaaaa", UnknownCapability, "newer than this Motes knows"),
        ("motes:x1:aaaaaaaaaaaaaaaa", UnknownCapability, "unknown capability type"),
    ],
)
def test_malformed_caps_get_a_clear_error(text: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        parse_cap(text)


def test_a_mistyped_cap_fails_its_checksum() -> None:
    text = str(FileReadCap(os.urandom(32), os.urandom(32)))
    flipped = text[:-3] + ("a" if text[-3] != "a" else "b") + text[-2:]
    with pytest.raises(BadCapability, match="checksum"):
        parse_cap(flipped)


def test_a_cap_of_the_wrong_length_or_kind_is_refused() -> None:
    read = FileReadCap(os.urandom(32), os.urandom(32))
    # a write cap spelled with file kind: a known level with an unknown kind
    forged = "motes:w1:" + str(read).split(":")[2]
    with pytest.raises(UnknownCapability, match="unknown kind"):
        parse_cap(forged)


def test_not_a_string() -> None:
    with pytest.raises(BadCapability, match="expected a string"):
        parse_cap(12)  # type: ignore[arg-type]
