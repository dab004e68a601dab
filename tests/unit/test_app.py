"""Declaring motes with ``App``: what each decorator records, and what it refuses."""

from __future__ import annotations

import pytest

from motes import App
from motes.errors import BadApp, RequestError
from motes.wire.messages import MoteSpec


def test_a_plain_function_becomes_a_mote_and_still_runs_locally() -> None:
    app = App("demo")

    @app.mote
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42
    assert app.specs() == [MoteSpec(name="double")]
    assert app.target("double") is double


def test_an_async_function_is_a_mote_too() -> None:
    app = App("demo")

    @app.mote(min=0)
    async def fetch(url: str) -> str:
        return url

    # An async handler serves many calls at once: the autoscaler counts 64 per instance.
    assert app.specs() == [MoteSpec(name="fetch", kind="function", min=0, concurrency=64)]
    assert app.target("fetch") is fetch


def test_a_sync_function_serves_one_call_at_a_time_whatever_it_asks() -> None:
    app = App("demo")

    @app.mote(concurrency=8)
    def crunch() -> None: ...

    @app.mote
    def plain() -> None: ...

    assert [s.concurrency for s in app.specs()] == [1, 1]


def test_an_async_function_may_set_its_own_concurrency() -> None:
    app = App("demo")

    @app.mote(concurrency=4)
    async def fetch() -> None: ...

    assert app.specs()[0].concurrency == 4


def test_options_are_recorded_in_the_spec() -> None:
    app = App("demo", requirements=["numpy>=2"])

    @app.mote(
        name="crunch",
        min=2,
        max=4,
        needs={"cpu": 2, "gpu": 1, "memory_mb": 512},
        labels={"zone": "a", "rack": 3},
        concurrency=4,
        spread="pack",
        kind="batch",
        idle=120,
    )
    async def work() -> None: ...

    assert app.specs() == [
        MoteSpec(
            name="crunch",
            min=2,
            max=4,
            needs={"cpu": 2, "gpu": 1, "memory_mb": 512},
            labels={"zone": "a", "rack": "3"},  # label values are strings on the wire
            concurrency=4,
            spread="pack",
            usage="batch",  # `kind=` on the decorator: the owner context
            idle=120,
        )
    ]
    assert app.requirements == ["numpy>=2"]


def test_a_class_becomes_a_keyed_actor() -> None:
    app = App("demo")

    @app.actor
    class Counter:
        def __init__(self) -> None:
            self.n = 0

    @app.actor(name="Tally", shards=8, min=2)
    class Totals: ...

    assert app.specs() == [
        MoteSpec(name="Counter", kind="actor", shards=64, concurrency=64),
        MoteSpec(name="Tally", kind="actor", shards=8, min=2, concurrency=64),
    ]
    assert app.target("Counter") is Counter


def test_the_app_remembers_where_it_was_declared() -> None:
    app = App("demo")

    assert (app.module, app.file) == (__name__, __file__)
    assert repr(app) == "App('demo', motes=[])"


def test_a_function_is_not_an_actor_and_a_class_is_not_a_function_mote() -> None:
    app = App("demo")

    with pytest.raises(BadApp, match=r"@demo\.actor decorates a class"):
        app.actor(lambda: None)
    with pytest.raises(BadApp, match=r"@demo\.mote decorates a function"):

        @app.mote
        class NotAFunction: ...

    assert app.motes == {}


def test_the_same_name_twice_is_refused() -> None:
    app = App("demo")

    @app.mote
    def f() -> None: ...

    with pytest.raises(BadApp, match="app demo declares mote 'f' twice"):
        app.mote(name="f")(lambda: None)


@pytest.mark.parametrize("name", ["", "has space", "1st", "a.b", "é", "x" * 64, "sub/ject"])
def test_a_bad_app_name_is_refused(name: str) -> None:
    with pytest.raises(RequestError, match=r"app name .* is not valid"):
        App(name)


@pytest.mark.parametrize("name", ["a.b", "with space", "9lives", "*"])
def test_a_bad_mote_name_is_refused(name: str) -> None:
    app = App("demo")

    with pytest.raises(RequestError, match=r"mote name .* is not valid"):
        app.mote(name=name)(lambda: None)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(RequestError, match="mote name '<lambda>' is not valid"):
        App("demo").mote(lambda: None)


@pytest.mark.parametrize("name", ["ok", "_private", "A-1_b", "x" * 63])
def test_good_names_are_kept(name: str) -> None:
    app = App(name)
    app.mote(name=name)(lambda: None)

    assert list(app.motes) == [name]


def test_an_unknown_need_is_refused_with_the_known_ones() -> None:
    with pytest.raises(BadApp, match=r"unknown needs \['gpus'\]; known: \['arch', 'camera'"):
        App("demo").mote(name="m", needs={"gpus": 1})(lambda: None)


@pytest.mark.parametrize(("lo", "hi"), [(3, 2), (-1, 2), (0, 0), (1, -5)])
def test_min_and_max_must_make_sense(lo: int, hi: int) -> None:
    with pytest.raises(BadApp, match="need 0 <= min <= max and max >= 1"):
        App("demo").mote(name="m", min=lo, max=hi)(lambda: None)


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(BadApp, match=r"mote demo\.m: .*retries"):
        App("demo").mote(name="m", retries=3)(lambda: None)


@pytest.mark.parametrize("usage", ["any", "batch", "interactive"])
def test_the_owner_context_is_recorded_as_usage(usage: str) -> None:
    app = App("demo")

    @app.actor(kind=usage)
    class Screen: ...

    assert (app.specs()[0].kind, app.specs()[0].usage) == ("actor", usage)


def test_an_unknown_owner_context_is_refused() -> None:
    with pytest.raises(BadApp, match=r"kind must be 'any', 'batch' or 'interactive', not 'gpu'"):
        App("demo").mote(name="m", kind="gpu")(lambda: None)


def test_a_mote_may_opt_out_of_energy_aware_placement() -> None:
    app = App("demo")
    app.mote(name="fast", energy=False)(lambda: None)
    app.mote(name="any")(lambda: None)
    assert [s.energy for s in app.specs()] == [False, True]
    with pytest.raises(BadApp, match=r"mote demo\.m: energy must be True or False, not 'no'"):
        App("demo").mote(name="m", energy="no")(lambda: None)  # type: ignore[call-overload]


@pytest.mark.parametrize("idle", [0, -1, 0.0, True, "30", None])
def test_idle_must_be_a_positive_number_of_seconds(idle: object) -> None:
    with pytest.raises(BadApp, match=r"mote demo\.m: idle must be a number of seconds > 0"):
        App("demo").mote(name="m", idle=idle)(lambda: None)


def test_asking_for_an_undeclared_mote_names_it() -> None:
    with pytest.raises(RequestError, match="app demo has no mote 'ghost'"):
        App("demo").target("ghost")


# --- bugs ------------------------------------------------------------------------------


def test_a_reused_decorator_gives_every_function_the_same_options() -> None:
    app = App("demo")
    heavy = app.mote(needs={"cpu": 2}, labels={"zone": "a"})

    @heavy
    def first() -> None: ...

    @heavy
    def second() -> None: ...

    assert app.motes["second"].spec.needs == {"cpu": 2}
    assert app.motes["second"].spec.labels == {"zone": "a"}


@pytest.mark.parametrize("needs", [{"cpu": "two"}, {"gpu": "yes"}, {"memory_mb": [1]}])
def test_a_resource_need_must_be_a_number(needs: dict) -> None:
    with pytest.raises(BadApp):
        App("demo").mote(name="m", needs=needs)(lambda: None)


@pytest.mark.parametrize("shards", [0, -1])
def test_an_actor_needs_at_least_one_shard(shards: int) -> None:
    app = App("demo")

    with pytest.raises(BadApp):

        @app.actor(shards=shards)
        class Counter: ...


def test_a_command_mote_records_how_its_programs_are_confined() -> None:
    app = App("tools")

    @app.command(files={"/data": "/srv/data"}, timeout=5, memory_mb=64, min=0)
    def count(name: str) -> list[str]:
        return ["wc", "-l", "/data/" + name]

    assert count("x") == ["wc", "-l", "/data/x"]  # still a plain function locally
    assert app.specs() == [MoteSpec(name="count", kind="command", min=0, concurrency=4)]
    confine = app.motes["count"].confine
    assert confine is not None and confine.files == {"/data": "/srv/data"}
    assert (confine.timeout_s, confine.memory_mb, confine.net) == (5, 64, False)
    assert confine.output_bytes == 1 << 20
    with pytest.raises(BadApp, match=r"tools\.bad"):
        app.command(name="bad", memory_mb="lots")(lambda: ["true"])
    with pytest.raises(BadApp, match="decorates a function"):
        app.command(type("NotAFunction", (), {}))
    with pytest.raises(BadApp, match="not a function mote"):
        app.flow("f", ["count"])
