"""A store service given garbage, forgeries and lies answers with typed errors and keeps
serving; nothing it already holds is harmed."""

from __future__ import annotations

import os

import pytest

from motes.client import Mesh
from motes.errors import BadMessage, MotesError
from motes.store._net import ShareFailed
from motes.store.format import encode_blob
from motes.wire import subjects
from motes.wire.codec import decode, encode, raise_for
from motes.wire.messages import Err
from motes.wire.store import ShareGet, SharePut, SharePutMany, SharesPut


async def test_garbage_and_forged_shares_are_refused_and_the_store_keeps_serving(
    client: Mesh,
) -> None:
    data = os.urandom(100_000)
    cap = await client.store.put(data)
    net = client.store.net
    await net.locate([])
    node = net.nodes.ids()[0]

    async def ask(op: str, payload: bytes) -> MotesError:
        reply = await client.bus.request(subjects.store(node, op), payload, timeout=5)
        with pytest.raises(MotesError) as info:
            raise_for(decode(reply.data, Err))
        return info.value

    for op in ("put", "get", "tag"):
        err = await ask(op, b"\xc1 not msgpack at all")
        assert isinstance(err, BadMessage)

    blob, shares = encode_blob(os.urandom(3000), 3, 10)
    header = encode(blob.header)
    other, _ = encode_blob(os.urandom(3000), 3, 10)
    forged = await ask("put", encode(SharePut(other.root, 0, header, 0, len(shares[0]), shares[0])))
    assert "does not hash to the blob root" in str(forged)
    lying = await ask("put", encode(SharePut(blob.root, 1, header, 0, len(shares[0]), shares[0])))
    assert "does not match its hash" in str(lying)
    short = await ask("put", encode(SharePut(blob.root, 0, header, 0, 5, shares[0][:5])))
    assert "does not fit its header" in str(short)
    missing = await ask("get", encode(ShareGet(blob.root, 0)))
    assert "no such share" in str(missing)
    with pytest.raises(ShareFailed, match="no such share"):
        await net.get_share(node, blob.root, 3)

    # Nothing refused was kept, and the store still serves what it holds and takes more.
    held = await net.locate([other.root, blob.root])
    assert held[other.root] == {} and held[blob.root] == {}
    assert await client.store.get(cap) == data
    await net.put_share(node, blob.root, 0, header, shares[0])
    fetched = await net.get_share(node, blob.root, 0)
    assert fetched.data == shares[0]

    # A batch: a forged share in it is refused alone; the others are kept.
    third, third_shares = encode_blob(os.urandom(3000), 3, 10)
    good = SharePut(third.root, 2, encode(third.header), 0, len(third_shares[2]), third_shares[2])
    bad = SharePut(other.root, 1, header, 0, len(shares[1]), shares[1])
    partial = SharePut(third.root, 3, encode(third.header), 1, 5, third_shares[3][:5])
    reply = await client.bus.request(
        subjects.store(node, "put"), encode(SharePutMany([bad, good, partial])), timeout=5
    )
    errors = decode(reply.data, SharesPut).errors
    assert "does not hash to the blob root" in errors[0]
    assert errors[1] == ""
    assert "whole shares only" in errors[2]
    assert (await net.get_share(node, third.root, 2)).data == third_shares[2]
    assert (await net.locate([third.root]))[third.root] == {2: [node]}
