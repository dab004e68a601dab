"""Erasure coding, convergent encryption, share checks, placement: pure properties."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motes.errors import BadMessage, StoreUnhappy
from motes.store.format import (
    Params,
    check_share,
    chunk_key,
    decode_blob,
    decode_manifest,
    encode_blob,
    fit_params,
    open_chunk,
    seal_chunk,
)
from motes.store.placement import allowed, assign, rank


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=5000), st.integers(1, 5), st.integers(0, 6))
def test_any_k_shares_rebuild_the_blob(data: bytes, k: int, extra: int) -> None:
    n = k + extra
    root, shares = encode_blob(data, k, n)
    assert all(check_share(root.header, i, s) for i, s in enumerate(shares))
    for nums in itertools.islice(itertools.combinations(range(n), k), 30):
        assert decode_blob(root.header, {i: shares[i] for i in nums}) == data


def test_every_3_of_10_rebuilds_exhaustively() -> None:
    data = os.urandom(10_000)
    root, shares = encode_blob(data, 3, 10)
    for nums in itertools.combinations(range(10), 3):
        assert decode_blob(root.header, {i: shares[i] for i in nums}) == data


def test_a_flipped_byte_fails_the_share_check() -> None:
    root, shares = encode_blob(os.urandom(3000), 3, 10)
    for i, share in enumerate(shares):
        for at in (0, len(share) // 2, len(share) - 1):
            bad = bytearray(share)
            bad[at] ^= 1
            assert not check_share(root.header, i, bytes(bad))
    assert not check_share(root.header, 1, shares[2])  # a share under another number


def test_the_header_is_bound_to_the_root() -> None:
    root, _ = encode_blob(b"x" * 100, 3, 10)
    other, _ = encode_blob(b"y" * 100, 3, 10)
    assert root.header.root() == root.root != other.root


def test_convergent_encryption_is_deterministic_per_secret() -> None:
    p = Params()
    secret, other = os.urandom(32), os.urandom(32)
    text = b"the same bytes" * 100
    assert chunk_key(secret, p, text) == chunk_key(secret, p, text)
    assert chunk_key(secret, p, text) != chunk_key(other, p, text)
    key = chunk_key(secret, p, text)
    sealed = seal_chunk(key, text)
    assert text not in sealed and open_chunk(key, sealed) == text
    with pytest.raises(BadMessage, match="does not decrypt"):
        open_chunk(os.urandom(32), sealed)


def test_garbage_is_not_a_manifest() -> None:
    with pytest.raises(BadMessage):
        decode_manifest(b"\x93garbage")


@pytest.mark.parametrize(
    "nodes, k, n, happy",
    [(1, 1, 1, 1), (2, 1, 2, 2), (3, 1, 3, 3), (5, 2, 5, 4), (10, 3, 10, 7), (40, 3, 10, 7)],
)
def test_default_parameters_fit_the_mesh(nodes: int, k: int, n: int, happy: int) -> None:
    p = fit_params(nodes)
    assert (p.k, p.n, p.happy) == (k, n, happy)


def test_asked_parameters_are_kept_or_refused() -> None:
    asked = Params(k=3, n=10, happy=7)
    assert fit_params(7, asked) == asked
    with pytest.raises(StoreUnhappy, match="7 distinct nodes"):
        fit_params(6, asked)
    with pytest.raises(StoreUnhappy):
        fit_params(0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Params(k=4, n=3)
    with pytest.raises(ValueError):
        Params(k=3, n=10, happy=2)


def test_rendezvous_moves_only_what_it_must() -> None:
    nodes = [f"n{i}" for i in range(10)]
    roots = [os.urandom(32) for _ in range(200)]
    before = {r: rank(r, nodes)[0] for r in roots}
    after = {r: rank(r, nodes[:-1])[0] for r in roots}
    moved = [r for r in roots if before[r] != after[r]]
    assert all(before[r] == "n9" for r in moved)  # only what the lost node led moves
    spread = assign(roots[0], 10, nodes)
    assert sorted(spread.values()) == sorted(nodes)  # n shares over n nodes: one each
    assert set(assign(roots[0], 10, nodes[:3]).values()) == set(nodes[:3])


def test_policy_labels_pick_nodes() -> None:
    labels = {"a": {"zone": "home"}, "b": {"zone": "cloud"}, "c": {"zone": "home", "ssd": "1"}}
    assert allowed(labels, {"zone": "home"}) == ["a", "c"]
    assert allowed(labels, {}) == ["a", "b", "c"]
