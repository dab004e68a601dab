"""Encoding calls and replies: what round-trips, what is refused, and with which error."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from motes.errors import BadMessage, CallTimeout, EncodeError, PayloadTooLarge, RemoteError
from motes.wire.codec import (
    batch_results,
    check_size,
    decode,
    decode_reply,
    decode_request,
    encode,
    encode_error,
    encode_request,
    encode_value_reply,
    error_reply,
    raise_for,
)
from motes.wire.messages import (
    ActorCall,
    AppRecord,
    Batch,
    BatchReply,
    Call,
    Err,
    MoteSpec,
    NodeAssignment,
    Ok,
)

# Values that travel as msgpack and come back equal (tuples would come back as lists,
# NaN is never equal to itself).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
kwargs = st.dictionaries(st.text(max_size=8), values, max_size=4)
timeouts = st.integers(min_value=0, max_value=2**31)

calls = st.builds(Call, args=st.lists(values, max_size=4), kwargs=kwargs, timeout_ms=timeouts)
batches = st.builds(
    Batch, items=st.lists(st.lists(values, max_size=3), max_size=4), timeout_ms=timeouts
)
actor_calls = st.builds(
    ActorCall,
    key=st.text(max_size=20),
    method=st.text(max_size=10),
    args=st.lists(values, max_size=4),
    kwargs=kwargs,
    timeout_ms=timeouts,
)
oks = st.builds(Ok, value=values)
errs = st.builds(Err, code=st.text(max_size=12), message=st.text(max_size=40), fields=kwargs)
batch_replies = st.builds(BatchReply, results=st.lists(oks | errs, max_size=4))


@given(calls | batches | actor_calls)
def test_requests_round_trip(request: Call | Batch | ActorCall) -> None:
    assert decode_request(encode_request(request, limit=0, mote="a.m")) == request


@given(oks | errs | batch_replies)
def test_replies_round_trip(reply: Ok | Err | BatchReply) -> None:
    assert decode_reply(encode(reply)) == reply


@given(values)
def test_a_value_reply_decodes_to_the_value(value: Any) -> None:
    assert decode_reply(encode_value_reply(value, limit=0, mote="a.m")) == Ok(value)


@pytest.mark.parametrize(
    "payload",
    [
        ["c2", [], {}, 0],  # a newer version of Call
        ["zz", [], {}, 0],
        ["r1", 1],  # a reply where a request belongs
    ],
)
def test_an_unknown_request_tag_is_a_bad_message(payload: list[Any]) -> None:
    with pytest.raises(BadMessage, match="not a Motes call"):
        decode_request(msgspec.msgpack.encode(payload))


@pytest.mark.parametrize("payload", [["r2", 1], ["c1", [], {}, 0], {"value": 1}, b"", 5])
def test_an_unknown_reply_tag_is_a_bad_message(payload: Any) -> None:
    with pytest.raises(BadMessage, match="not a Motes reply"):
        decode_reply(msgspec.msgpack.encode(payload))


def test_a_control_message_of_the_wrong_type_is_a_bad_message() -> None:
    record = AppRecord(name="a", digest="sha256:x", module="a", motes=[MoteSpec(name="m")])

    assert decode(encode(record), AppRecord) == record
    with pytest.raises(BadMessage, match="not a NodeAssignment"):
        decode(encode(record), NodeAssignment)


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (Call(args=[1, object()], kwargs={}, timeout_ms=0), "argument 1 of type object"),
        (Call(args=[], kwargs={"when": object()}, timeout_ms=0), "argument 'when' of type object"),
        (Call(args=[2**70], kwargs={}, timeout_ms=0), "argument 0 of type int"),
        (Call(args=[{"k": object()}], kwargs={}, timeout_ms=0), "argument 0 of type dict"),
        (Batch(items=[[1], [2, object()]], timeout_ms=0), "item 1 argument 1 of type object"),
        (
            ActorCall(key="k", method="add", args=["ok"], kwargs={"x": object()}, timeout_ms=0),
            "argument 'x' of type object",
        ),
    ],
)
def test_an_unencodable_argument_is_named(request_: Any, named: str) -> None:
    with pytest.raises(EncodeError) as caught:
        encode_request(request_, limit=0, mote="a.m")

    assert str(caught.value).startswith(named + " cannot be sent as msgpack")
    assert isinstance(caught.value, TypeError)


def test_an_oversize_call_is_refused_before_sending() -> None:
    request = Call(args=["x" * 1000], kwargs={}, timeout_ms=0)

    with pytest.raises(PayloadTooLarge) as caught:
        encode_request(request, limit=500, mote="a.m")

    assert (caught.value.what, caught.value.limit) == ("the call to a.m", 500)
    assert caught.value.size > 1000
    assert encode_request(request, limit=0, mote="a.m")  # 0: no limit


@pytest.mark.parametrize(
    ("size", "limit", "fits"), [(10, 10, True), (11, 10, False), (99, 0, True)]
)
def test_check_size(size: int, limit: int, fits: bool) -> None:
    data = b"x" * size
    if fits:
        assert check_size(data, limit, "it") is data
    else:
        with pytest.raises(PayloadTooLarge, match="it is 11 bytes, over the 10-byte"):
            check_size(data, limit, "it")


def test_an_unencodable_result_becomes_an_encode_error_reply() -> None:
    reply = decode_reply(encode_value_reply(object(), limit=0, mote="a.m"))

    assert isinstance(reply, Err)
    assert reply.code == "encode"
    assert reply.fields["what"] == "the result of a.m"
    with pytest.raises(EncodeError, match=r"the result of a\.m of type object"):
        raise_for(reply)


def test_an_oversize_result_becomes_a_too_large_reply() -> None:
    reply = decode_reply(encode_value_reply("x" * 1000, limit=100, mote="a.m"))

    assert isinstance(reply, Err)
    assert (reply.code, reply.fields["limit"]) == ("too_large", 100)


def test_an_error_reply_is_raised_as_its_type() -> None:
    reply = decode_reply(encode_error(CallTimeout("a.m", 2.5)))

    with pytest.raises(CallTimeout, match=r"call to a\.m got no reply within 2\.5 s"):
        raise_for(reply)
    assert raise_for(Ok([1, 2])) == [1, 2]


def test_batch_results_per_item() -> None:
    err = error_reply(RemoteError("a.m", "ValueError", "bad"))
    results = [Ok(1), err, Ok(3)]

    assert batch_results(BatchReply(results=results), 3) == results
    assert batch_results(err, 2) == [err, err]  # a whole-batch failure fails every item
    with pytest.raises(BadMessage, match="batch reply has 3 results, expected 2"):
        batch_results(BatchReply(results=results), 2)
    with pytest.raises(BadMessage, match="a single reply arrived for a batch"):
        batch_results(Ok(1), 1)


# --- bugs ------------------------------------------------------------------------------


def _nested(depth: int, *, reply: bool) -> bytes:
    """A Call whose one argument (or an Ok whose value) is a list nested ``depth`` deep."""
    head, tail = (b"\x92\xa2r1", b"") if reply else (b"\x94\xa2c1\x91", b"\x80\x00")
    return head + b"\x91" * depth + b"\xc0" + tail


@pytest.mark.parametrize("reply", [False, True], ids=["request", "reply"])
def test_deeply_nested_bytes_are_a_bad_message(reply: bool) -> None:
    decoder = decode_reply if reply else decode_request

    with pytest.raises(BadMessage):
        decoder(_nested(1000, reply=reply))


# Call(args=[], kwargs={"s": "\x80"}) with the first byte of the string's UTF-8 zeroed.
BAD_UTF8_CALL = b"\x94\xa2c1\x90\x81\xa1s\xa2\x00\x80\x00"


@pytest.mark.parametrize("decoder", [decode_request, decode_reply], ids=["request", "reply"])
def test_a_string_that_is_not_utf8_is_a_bad_message(decoder: Any) -> None:
    data = BAD_UTF8_CALL if decoder is decode_request else b"\x92\xa2r1\xa2\x00\x80"

    with pytest.raises(BadMessage):
        decoder(data)


@settings(max_examples=300)
@given(st.binary(max_size=64))
@example(b"\x91\xa3\x00\x00\x80")  # [<a 3-byte tag that is not UTF-8>]
def test_random_bytes_raise_only_bad_message(data: bytes) -> None:
    for decoder in (decode_request, decode_reply, lambda d: decode(d, NodeAssignment)):
        try:
            decoder(data)
        except BadMessage:
            pass


@settings(max_examples=300)
@given(
    message=calls | batches | actor_calls | oks | errs,
    position=st.integers(0, 2**16),
    byte=st.integers(0, 255),
    keep=st.integers(0, 2**16),
)
@example(message=Call(args=[], kwargs={"s": "\x80"}, timeout_ms=0), position=9, byte=0, keep=2**16)
def test_damaged_messages_raise_only_bad_message(
    message: Any, position: int, byte: int, keep: int
) -> None:
    raw = bytearray(encode(message))
    raw[position % len(raw)] = byte
    for decoder in (decode_request, decode_reply):
        try:
            decoder(bytes(raw[:keep]))
        except BadMessage:
            pass
