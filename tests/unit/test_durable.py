"""Durable calls and flows without I/O: next-stage routing, call ids as keys, messages."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motes import App
from motes.errors import BadApp, BadMessage, UnknownFlow, error_from_wire
from motes.runtime.durable import next_stage
from motes.wire import subjects
from motes.wire.codec import decode, encode, encode_error, encode_request, raise_for
from motes.wire.messages import AppRecord, DurableCall, Err, FlowDef

OLD = ["fetch", "parse", "store"]
NEW = ["fetch", "parse", "enrich", "store"]


@pytest.mark.parametrize(
    ("current", "stage", "path", "done", "expected"),
    [
        # Unchanged wiring: the next stage, carrying the rest.
        (OLD, "fetch", ["parse", "store"], [], ("parse", ["store"])),
        (OLD, "parse", ["store"], ["fetch"], ("store", [])),
        (OLD, "store", [], ["fetch", "parse"], (None, [])),
        # Rewired while the item was in parse: the current wiring decides.
        (NEW, "parse", ["store"], ["fetch"], ("enrich", ["store"])),
        (NEW, "fetch", ["parse", "store"], [], ("parse", ["enrich", "store"])),
        # Its stage was dropped: it finishes the path it was on.
        (["fetch", "store"], "parse", ["store"], ["fetch"], ("store", [])),
        (["fetch", "store"], "enrich", ["store"], ["fetch", "parse"], ("store", [])),
        (["a", "d"], "b", ["c", "d"], ["a"], ("c", ["d"])),
        # The flow was deleted: the carried path still gets it to the end.
        (None, "parse", ["store"], ["fetch"], ("store", [])),
        (None, "store", [], ["fetch", "parse"], (None, [])),
        # Reordered so that a stage already run comes next: it is skipped, never rerun.
        (["store", "fetch", "parse"], "parse", [], ["store", "fetch"], (None, [])),
        (["parse", "fetch", "store"], "fetch", ["store"], ["parse"], ("store", [])),
    ],
)
def test_next_stage(
    current: list[str] | None,
    stage: str,
    path: list[str],
    done: list[str],
    expected: tuple[str | None, list[str]],
) -> None:
    assert next_stage(current, stage, path, done) == expected


names = st.lists(st.sampled_from("abcdefgh"), unique=True, min_size=1, max_size=8)


@given(names, names, st.data())
def test_an_item_ends_and_never_runs_a_stage_twice(
    first: list[str], rewired: list[str], data: st.DataObject
) -> None:
    """Whatever rewirings happen between hops, an item finishes in finitely many hops."""
    wirings = [first, rewired, None]
    stage, path, done = first[0], first[1:], []
    for _ in range(20):
        current = data.draw(st.sampled_from(wirings))
        nxt, path = next_stage(current, stage, path, done)
        done.append(stage)
        if nxt is None:
            break
        assert nxt not in done
        stage = nxt
    else:
        pytest.fail("the item never finished")


@given(st.text(min_size=1, max_size=80))
def test_call_tokens_are_kv_safe_and_one_to_one(call_id: str) -> None:
    token = subjects.call_token(call_id)
    key = subjects.call_result_key("app", "mote", token)
    assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key)
    assert ".." not in key and not key.endswith(".")
    other = call_id + "x"
    assert subjects.call_token(other) != token


def test_plain_ids_are_their_own_token() -> None:
    assert subjects.call_token("order-42") == "order-42"
    assert subjects.call_token("abc.17") == "abc.17"
    assert subjects.call_token("a b").startswith("=")
    assert subjects.call_token(".x").startswith("=")
    assert subjects.call_results("app", "m", "abc") == "c.app.m.abc.*"
    assert subjects.parse_durable(subjects.durable("app", "m")) == ("app", "m")
    assert subjects.parse_durable("motes.call.app.m") is None


def test_consumers_never_collide() -> None:
    assert subjects.durable_consumer("a-b", "c") != subjects.durable_consumer("a", "b-c")
    assert subjects.durable_consumer("a_", "b") != subjects.durable_consumer("a", "_b")


def test_durable_call_round_trips() -> None:
    call = DurableCall("id-1", [1, {"a": b"x"}], {"k": 2}, 30_000, flow="f", path=["b"], done=["a"])
    assert decode(encode_request(call, 1 << 20, "app.m"), DurableCall) == call
    plain = DurableCall("id-2", [], {}, 1000)
    data = encode(plain)
    assert data.startswith(b"\x98\xa2d1")  # ["d1", id, args, kwargs, timeout, flow, path, done]
    assert decode(data, DurableCall) == plain
    with pytest.raises(BadMessage):
        decode(b"\x93\xa2d1\x90\x80", DurableCall)
    with pytest.raises(BadMessage):
        decode(encode(FlowDef(app="a", name="f", stages=["x"])), DurableCall)


def test_app_record_without_flows_still_decodes() -> None:
    record = AppRecord(name="a", digest="sha256:0", module="m", motes=[])
    assert decode(encode(record), AppRecord).flows == {}


def test_app_flow_declaration() -> None:
    app = App("shop")

    @app.mote
    def fetch(url: str) -> str:
        return url

    @app.mote
    async def parse(text: str) -> list[str]:
        return text.split()

    @app.actor
    class Cart: ...

    app.flow("ingest", [fetch, "parse"])
    assert app.flows == {"ingest": ["fetch", "parse"]}
    with pytest.raises(BadApp, match="twice"):
        app.flow("ingest", ["fetch"])
    with pytest.raises(BadApp, match="at least one stage"):
        app.flow("empty", [])
    with pytest.raises(BadApp, match="'weigh' is not a mote of shop"):
        app.flow("f2", ["fetch", "weigh"])
    with pytest.raises(BadApp, match="actor"):
        app.flow("f3", ["fetch", "Cart"])
    with pytest.raises(BadApp, match="a stage appears twice"):
        app.flow("f4", ["fetch", "parse", "fetch"])
    with pytest.raises(BadApp, match=r"declare it with @app\.mote"):
        app.flow("f5", [print])


def test_unknown_flow_crosses_the_wire() -> None:
    err = UnknownFlow("shop.nope", ["shop.ingest"])
    with pytest.raises(UnknownFlow) as info:
        raise_for(decode(encode_error(err), Err))
    assert info.value.known == ["shop.ingest"] and str(info.value) == str(err)
    assert isinstance(error_from_wire("unknown_flow", "x", {"flow": "f"}), LookupError)
