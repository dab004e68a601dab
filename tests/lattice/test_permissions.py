"""The permission matrix, against a real nats-server in operator mode.

Every principal kind, with the credential the authority would mint for it
(``wire.acl.permissions``), against every class of subject and bucket in
``docs/specs/trust.md``: allowed where the table says so, refused where it does not.
A publish the server refuses fails at once with ``Forbidden``; one it allows reaches
nobody here (``NoResponders``), or an answer. A refused subscription is ``Forbidden``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from motes.config import LatticeConfig
from motes.errors import Forbidden, MotesError, Unauthorized
from motes.identity import KeyKind, SigningKey
from motes.lattice import NatsServer, ServerConfig
from motes.trust.keyring import MeshKeys, write_creds
from motes.wire import acl
from motes.wire import subjects as s
from motes.wire._nats import NatsBus

N1, N2 = "n1aaaaaaaaaaaa", "n2bbbbbbbbbbbb"
SHOP = ("shop",)

ROLES: dict[str, tuple[str, acl.Scope]] = {
    "admin": ("admin", acl.Scope(principal="padmin")),
    "person (no grant)": ("person", acl.Scope(principal="pnone")),
    "person (call shop)": ("person", acl.Scope(principal="pshop", calls=SHOP)),
    "person (deploy shop)": ("person", acl.Scope(principal="pdep", calls=SHOP, deploys=SHOP)),
    "person (run on n1)": ("person", acl.Scope(principal="prun", runs=(N1,))),
    "node n1": ("node", acl.Scope(principal=N1, node=N1)),
    "store of n1": ("store", acl.Scope(principal="nstore", node=N1)),
    "scheduler": ("scheduler", acl.Scope(principal="nsched", node=N1)),
    "warm worker": ("worker", acl.Scope(principal="nwarm", node=N1, wid="w1")),
    "instance shop.price": (
        "instance",
        acl.Scope(principal="ninst", node=N1, app="shop", mote="price", wid="w2"),
    ),
    "shop's own code": ("app", acl.Scope(principal="ncode", calls=SHOP, stores=True)),
    "invitee": ("invitee", acl.Scope(principal="iinvite")),
    "identity": ("identity", acl.Scope(principal="pident")),
    "leaf link of n1": ("link", acl.Scope(principal=N1, node=N1)),
}
LINK = "leaf link of n1"

KV_GET = "$JS.motes.API.DIRECT.GET.KV_{b}.$KV.{b}.{k}"
api = functools.partial(s.js_api, domain=s.MESH_DOMAIN)
CALLERS = {"admin", "person (call shop)", "person (deploy shop)", "shop's own code"}
MEMBERS = {"admin", "person (call shop)", "person (deploy shop)", "person (run on n1)"}
"""People with any call, deploy or run grant: they may see the mesh's map."""


def _watch(bucket: str) -> str:
    return api("CONSUMER.CREATE", s.kv_stream(bucket))


# (what, publish or subscribe, subject) -> the roles allowed it.
MATRIX: list[tuple[str, str, str, set[str]]] = [
    (
        "call shop.price",
        "pub",
        s.call("shop", "price"),
        CALLERS | {LINK},
    ),
    ("call another app", "pub", s.call("bank", "pay"), {"admin"} | {LINK}),
    ("serve shop.price", "sub", s.call("shop", "price"), {"admin", "instance shop.price"} | {LINK}),
    ("serve another mote", "sub", s.call("bank", "pay"), {"admin"} | {LINK}),
    (
        "run a program on n1 as itself",
        "pub",
        s.exec_request(N1, "prun"),
        {"admin", LINK} | {"person (run on n1)"},
    ),
    ("run a program on n2", "pub", s.exec_request(N2, "prun"), {"admin", LINK}),
    ("run a program on n1 as another", "pub", s.exec_request(N1, "pshop"), {"admin", LINK}),
    ("serve n1's programs", "sub", s.exec_request(N1, "*"), {"admin", "node n1", LINK}),
    ("serve n2's programs", "sub", s.exec_request(N2, "*"), {"admin", LINK}),
    ("own heartbeat", "pub", s.heartbeat(N1), {"admin", "node n1"} | {LINK}),
    ("another node's heartbeat", "pub", s.heartbeat(N2), {"admin"}),
    ("report own usage", "pub", s.usage(N1), {"admin", "node n1", LINK}),
    ("report usage as another node", "pub", s.usage(N2), {"admin"}),
    (
        "read the usage history",
        "pub",
        s.js_api("CONSUMER.CREATE", s.STREAM_USAGE),
        MEMBERS,
    ),
    (
        "purge the usage history",
        "pub",
        s.js_api("STREAM.PURGE", s.STREAM_USAGE),
        {"admin"},
    ),
    ("read every heartbeat", "sub", s.HEARTBEATS, {"admin", "scheduler"}),
    ("write an assignment", "pub", s.kv_subject(s.KV_PLACE, N2), {"admin", "scheduler"}),
    ("write own node record", "pub", s.kv_subject(s.KV_NODES, N1), {"admin", "node n1"} | {LINK}),
    ("write another's node record", "pub", s.kv_subject(s.KV_NODES, N2), {"admin"}),
    (
        "read own assignment",
        "pub",
        KV_GET.format(b=s.KV_PLACE, k=N1),
        {"admin", "node n1", "scheduler", "instance shop.price"} | {LINK},
    ),
    (
        "take the scheduler lease",
        "pub",
        s.kv_subject(s.KV_LEASE, s.LEASE_KEY),
        {"admin", "scheduler"},
    ),
    ("write an app record", "pub", s.kv_subject(s.KV_APPS, "shop"), {"admin"}),
    ("write a principal", "pub", s.kv_subject(s.KV_PRINCIPALS, "pnone"), {"admin"}),
    ("write a grant", "pub", s.kv_subject(s.KV_GRANTS, "g1"), {"admin"}),
    (
        "read the convergence secret",
        "pub",
        KV_GET.format(b=s.KV_STORE, k=s.CONVERGENCE_KEY),
        {"admin"},
    ),
    (
        "read its own actors' state",
        "pub",
        KV_GET.format(b=s.KV_ACTORS, k=s.actor_kv_key("shop", "price", "a2V5")),
        {"admin", "instance shop.price"} | {LINK},
    ),
    (
        "read another mote's actor state, same app",
        "pub",
        KV_GET.format(b=s.KV_ACTORS, k=s.actor_kv_key("shop", "Cart", "a2V5")),
        {"admin"} | {LINK},
    ),
    (
        "read another app's actor state",
        "pub",
        KV_GET.format(b=s.KV_ACTORS, k="bank.Vault.eA"),
        {"admin"} | {LINK},
    ),
    (
        "take shop.price's durable calls",
        "pub",
        api("CONSUMER.MSG.NEXT", s.STREAM_CALLS, s.durable_consumer("shop", "price")),
        {"admin", "instance shop.price"} | {LINK},
    ),
    ("serve a node's store", "sub", s.store(N1, "put"), {"admin", "store of n1"} | {LINK}),
    (
        "move shares",
        "pub",
        s.store(N2, "get"),
        {"admin", "store of n1", "shop's own code"} | {LINK},
    ),
    ("control a worker of n1", "pub", s.worker(N1, "w1"), {"admin", "node n1"}),
    ("answer as warm worker w1", "sub", s.worker(N1, "w1"), {"admin", "warm worker"}),
    ("write the audit log", "pub", s.AUDIT, {"admin"}),
    ("update the account (revocations)", "pub", "$SYS.REQ.CLAIMS.UPDATE", {"admin"}),
    ("ask to join with an invite", "pub", s.auth("join", "iinvite"), {"admin", "invitee"}),
    ("renew as pident", "pub", s.auth("renew", "pident"), {"admin", "identity"}),
    ("renew as someone else", "pub", s.auth("renew", "padmin"), {"admin"}),
    ("read someone else's replies", "sub", "_I.pother.>", set()),
    ("read another machine's replies", "sub", f"_I.{N2}.>", set()),
    (
        "write own node record from a leaf",
        "pub",
        s.kv_subject(s.KV_NODES, N1, via_domain=s.MESH_DOMAIN),
        {"admin", "node n1", LINK},
    ),
    (
        "write another's node record from a leaf",
        "pub",
        s.kv_subject(s.KV_NODES, N2, via_domain=s.MESH_DOMAIN),
        {"admin"},
    ),
    ("follow the mesh's events", "sub", s.EVENTS_ALL, MEMBERS),
    (
        "submit a durable call",
        "pub",
        s.durable("shop", "price"),
        CALLERS | {"instance shop.price"} | {LINK},
    ),
    # A leaf link may use both ways what it uses either way (nats-server#2454): it
    # carries its nodes' answers, so it may also ask (it learns the mesh's map).
    ("ask every node's status", "pub", s.CTL_NODES, MEMBERS | {LINK}),
    ("answer for a node's status", "sub", s.CTL_NODES, {"admin", "node n1"} | {LINK}),
    ("announce a scheduling decision", "pub", s.EVENTS_SCHED, {"admin", "scheduler"}),
    ("answer as the scheduler", "sub", s.SCHED_WHY, {"admin", "scheduler", LINK}),
    ("ask the scheduler why", "pub", s.SCHED_WHY, CALLERS | {LINK}),
    (
        "read the node records",
        "pub",
        KV_GET.format(b=s.KV_NODES, k=N2),
        MEMBERS | {"node n1", "scheduler"} | {LINK},
    ),
    (
        "watch the assignments",
        "pub",
        _watch(s.KV_PLACE),
        {"admin", "node n1", "scheduler", "instance shop.price"} | {LINK},
    ),
    (
        "read another app's record",
        "pub",
        KV_GET.format(b=s.KV_APPS, k="bank"),
        MEMBERS | {"node n1", "scheduler"} | {LINK},
    ),
    (
        "read the app's own record",
        "pub",
        KV_GET.format(b=s.KV_APPS, k="shop"),
        CALLERS | MEMBERS | {"node n1", "scheduler"} | {LINK},
    ),
    ("upload a bundle", "pub", "$O.motes_bundles.C.abc", {"admin", "person (deploy shop)"}),
    (
        "purge every bundle",
        "pub",
        api("STREAM.PURGE", s.obj_stream(s.OBJ_BUNDLES)),
        {"admin"},
    ),
    (
        "read bundles",
        "pub",
        api("CONSUMER.CREATE", s.obj_stream(s.OBJ_BUNDLES)),
        {"admin", "person (deploy shop)", "node n1"} | {LINK},
    ),
    (
        "read the principals",
        "pub",
        KV_GET.format(b=s.KV_PRINCIPALS, k="pnone"),
        {"admin", "node n1", "scheduler", "instance shop.price"} | {LINK},
    ),
    ("read the invites", "pub", KV_GET.format(b=s.KV_INVITES, k="i1"), {"admin"}),
    (
        "store its own mote's result",
        "pub",
        s.kv_subject(s.KV_RESULTS, "c.shop.price.t1"),
        {"admin", "instance shop.price"} | {LINK},
    ),
    (
        "store another mote's result",
        "pub",
        s.kv_subject(s.KV_RESULTS, "c.bank.pay.t1"),
        {"admin"} | {LINK},
    ),
    ("watch stored results (known limit)", "pub", _watch(s.KV_RESULTS), CALLERS | {LINK}),
    (
        "put data on a node's store",
        "pub",
        s.store(N2, "put"),
        {"admin", "store of n1", "shop's own code"} | {LINK},
    ),
    (
        "report own holdings",
        "pub",
        s.kv_subject(s.KV_HOLDINGS, N1),
        {"admin", "store of n1"} | {LINK},
    ),
    ("report another's holdings", "pub", s.kv_subject(s.KV_HOLDINGS, N2), {"admin"}),
    (
        "write a dataset record",
        "pub",
        s.kv_subject(s.KV_DATASETS, "d1"),
        {"admin", "store of n1", "shop's own code"} | {LINK},
    ),
    (
        "hold the store's repair lease",
        "pub",
        s.kv_subject(s.KV_LEASE, "store-repair"),
        {"admin", "store of n1"} | {LINK},
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lattice(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[NatsServer, MeshKeys, Path]]:
    home = tmp_path_factory.mktemp("perm")
    keys = MeshKeys.load_or_create(home)
    from motes.lattice import Operator

    op = Operator(
        jwt=keys.operator_jwt(),
        system_account=keys.system_nkey,
        resolver_dir=home / "accounts",
        accounts={keys.system_nkey: keys.system_jwt(), keys.account_nkey: keys.account_jwt()},
    )
    server = await NatsServer.start(
        ServerConfig(store_dir=home / "js", operator=op, domain=s.MESH_DOMAIN),
        workdir=home / "server",
    )
    try:
        yield server, keys, home
    finally:
        await server.stop()


_count = itertools.count()
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _as(lattice: tuple[NatsServer, MeshKeys, Path], role_name: str) -> NatsBus:
    server, keys, home = lattice
    role, scope = ROLES[role_name]
    key = SigningKey.generate(KeyKind.PERSON)
    jwt = keys.user_jwt(
        key.public, name=role_name, permissions=acl.permissions(role, scope), ttl_s=600
    )
    creds = write_creds(home / f"{next(_count)}.creds", jwt, key)
    config = LatticeConfig(
        servers=(server.url,),
        credentials=str(creds),
        inbox_prefix=acl.inbox_prefix(scope.principal, scope.node),
    )
    return await NatsBus.connect(config, name=role_name)


async def _allowed(bus: NatsBus, kind: str, subject: str) -> bool:
    try:
        if kind == "pub":
            await bus.request(subject, b"", timeout=2.0)
        else:
            await (await bus.subscribe(subject)).unsubscribe()
    except Forbidden:
        return False
    except MotesError:
        return True  # no one answers here; the server let it through
    return True


@pytest.mark.parametrize("role_name", list(ROLES))
async def test_each_principal_may_do_what_the_trust_table_says_and_no_more(
    lattice: tuple[NatsServer, MeshKeys, Path], role_name: str
) -> None:
    bus = await _as(lattice, role_name)
    try:
        wrong = []
        for what, kind, subject, roles in MATRIX:
            expected = role_name in roles
            if await _allowed(bus, kind, subject) != expected:
                wrong.append(f"{what} ({kind} {subject}): {'refused' if expected else 'allowed'}")
    finally:
        await bus.close()
    assert not wrong, f"{role_name}: " + "; ".join(wrong)


async def test_no_credential_no_connection(lattice: tuple[NatsServer, MeshKeys, Path]) -> None:
    server, _, _ = lattice
    with pytest.raises(Unauthorized, match="refused"):
        await NatsBus.connect(LatticeConfig(servers=(server.url,), connect_attempts=1))


async def test_a_user_signed_by_a_foreign_account_is_refused(
    lattice: tuple[NatsServer, MeshKeys, Path], tmp_path: Path
) -> None:
    server, _, _ = lattice
    stranger = MeshKeys.load_or_create(tmp_path)  # another mesh's keys
    key = SigningKey.generate(KeyKind.PERSON)
    jwt = stranger.user_jwt(
        key.public,
        name="x",
        permissions=acl.permissions("admin", acl.Scope(principal="x")),
        ttl_s=60,
    )
    creds = write_creds(tmp_path / "x.creds", jwt, key)
    with pytest.raises(Unauthorized):
        await NatsBus.connect(
            LatticeConfig(servers=(server.url,), credentials=str(creds), connect_attempts=1)
        )
