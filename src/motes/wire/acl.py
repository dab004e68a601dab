"""What each principal may publish and subscribe to, derived from the subject builders.

``permissions(role, ...)`` is the one place a credential's reach is decided; the
authority writes what it returns into the JWTs it mints, and nats-server enforces it.
Everything not listed is refused. Where NATS cannot scope by key (a KV watch or a
consumer reads a whole bucket), the reach is the bucket, and readers verify signatures
before acting (``docs/specs/trust.md`` has the table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..identity.jwt import Permissions
from . import subjects as s

__all__ = ["Scope", "inbox_prefix", "permissions"]

RESPONSE_TTL_S = 60.0

_api = s.js_api


def _both_forms(subjects: list[str]) -> list[str]:
    """Each JetStream subject as a hub checks it and as a leaf's server does. A mesh's
    clients name its JetStream domain (``$JS.motes.API...``): a hub maps that to
    ``$JS.API...`` before it checks a permission (and the domain's mapping of bucket
    writes to ``$KV...``), while a leaf, which has no JetStream, checks the name as
    sent."""
    out: list[str] = []
    for subject in subjects:
        out.append(subject)
        if subject.startswith("$JS.API."):
            out.append(f"$JS.{s.MESH_DOMAIN}.API." + subject.removeprefix("$JS.API."))
        elif subject.startswith("$KV."):
            out.append(f"$JS.{s.MESH_DOMAIN}.API.{subject}")
    return out


def inbox_prefix(principal: str, node: str = "") -> str:
    """Where replies to ``principal`` arrive: no one else may subscribe there. A node's
    processes (``node``) share its prefix, so that its leaf link can carry their
    replies and no one else's."""
    return f"_I.{node}.{principal}" if node else f"_I.{principal}"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a role's permissions are about."""

    principal: str
    """The holder's id: its inbox, its own auth subjects."""
    node: str = ""
    app: str = ""
    mote: str = ""
    wid: str = ""
    calls: tuple[str, ...] = ()
    """``app`` or ``app.mote`` patterns the holder may call (from its grants)."""
    deploys: tuple[str, ...] = ()
    """App names (patterns) the holder may deploy."""
    stores: bool = False
    """May use the store as a client (put and get data)."""
    runs: tuple[str, ...] = ()
    """Node ids (or ``*``) the holder may run programs on (its ``run`` grants)."""
    schedules: bool = False
    """A node that may run the scheduler (a leaf link then carries its traffic)."""
    extra_pub: tuple[str, ...] = field(default=())


def _read_bucket(bucket: str) -> list[str]:
    """Read a whole KV bucket: bind, get by key, watch (a consumer on its stream)."""
    return _read_stream(s.kv_stream(bucket))


def _read_stream(stream: str) -> list[str]:
    return [
        _api("STREAM.NAMES"),  # nats-py finds a stream by subject before consuming
        _api("STREAM.INFO", stream),
        _api("DIRECT.GET", stream, ">"),
        _api("STREAM.MSG.GET", stream),
        _api("CONSUMER.CREATE", stream),
        _api("CONSUMER.CREATE", stream, ">"),
        _api("CONSUMER.INFO", stream, ">"),
        _api("CONSUMER.DELETE", stream, ">"),
        s.js_flow_control(stream),
    ]


def _get_keys(bucket: str, keys: Iterable[str]) -> list[str]:
    """Bind a bucket and read only ``keys`` (direct get puts the key in the subject)."""
    stream = s.kv_stream(bucket)
    return [_api("STREAM.INFO", stream)] + [
        _api("DIRECT.GET", stream, s.kv_subject(bucket, k)) for k in keys
    ]


def _write_keys(bucket: str, keys: Iterable[str]) -> list[str]:
    return [s.kv_subject(bucket, k) for k in keys]


def _consume(stream: str, durable: str, subject: str) -> list[str]:
    """Pull from one durable consumer of ``stream`` (created on first use)."""
    return [
        _api("STREAM.INFO", stream),
        _api("CONSUMER.CREATE", stream, durable, ">"),
        _api("CONSUMER.CREATE", stream, durable),
        _api("CONSUMER.DURABLE.CREATE", stream, durable),
        _api("CONSUMER.INFO", stream, durable),
        _api("CONSUMER.MSG.NEXT", stream, durable),
        f"$JS.ACK.{stream}.{durable}.>",
        subject,
    ]


def _read_objects(bucket: str) -> list[str]:
    return _read_stream(s.obj_stream(bucket))


def _write_objects(bucket: str) -> list[str]:
    """Add objects (and look them up first). No purge: nats-py purges only to replace
    an object, and a purge without a filter would empty the whole bucket."""
    return [*s.obj_subjects(bucket), *_read_objects(bucket)]


def _caller(scope: Scope) -> list[str]:
    """Calling motes that match the scope's call patterns (and waiting for them)."""
    out: list[str] = []
    for pattern in scope.calls:
        app, _, mote = pattern.partition(".")
        mote = mote or "*"
        out += [
            s.call(app, mote),
            s.actor(app, mote, "*"),
            s.durable(app, mote),
        ]
        out += _get_keys(s.KV_APPS, [app])
        out += _get_keys(s.KV_FLOWS, [s.flow_kv_key(app, "*")])
    if scope.calls:
        out += [s.SCHED_DEMAND, s.SCHED_WHY]
        out += _read_bucket(s.KV_RESULTS)
        out += [_api("STREAM.INFO", s.STREAM_CALLS)]
    return out


def _runner(scope: Scope) -> list[str]:
    """Asking the nodes of the scope's run grants to run a program, as itself: the
    subject names the asker, so the node knows whose grant to check."""
    return [s.exec_request("*" if n in ("*", ">") else n, scope.principal) for n in scope.runs]


def _store_client(node: str = "") -> list[str]:
    return [
        s.store("*", "put"),
        s.store("*", "get"),
        s.store("*", "tag"),
        s.STORE_LOCATE,
        s.STORE_REPAIR,
        *_read_bucket(s.KV_HOLDINGS),
        *_read_bucket(s.KV_DATASETS),
        *_write_keys(s.KV_DATASETS, ["*"]),
        *_read_bucket(s.KV_FILES),
        *_write_keys(s.KV_FILES, ["*"]),
    ]


def _own(scope: Scope) -> tuple[list[str], list[str]]:
    """What every principal has: its inbox, and its own requests to the authority."""
    return [s.auth("*", scope.principal)], [s.inbox(inbox_prefix(scope.principal, scope.node))]


def _link(scope: Scope) -> tuple[list[str], list[str], int]:
    """A leaf machine's link to the hubs: what may cross it, both ways. The union of
    what its node's processes may do (its agent, store, scheduler if it may schedule,
    its workers, any instance placed there and that instance's code), so whatever runs
    there reaches the mesh; each process is held to its own credential by the leaf's
    own server. Never the authority's buckets, another node's records or heartbeats,
    the store's convergence secret, or replies meant for another machine."""
    node = scope.node
    calls = s.STREAM_CALLS
    pub = [
        s.auth("*", node),
        s.heartbeat(node),
        s.instance_events(node),
        s.instance_load(node),
        s.log("*", "*", node),
        s.usage(node),
        _api("STREAM.INFO", s.STREAM_LOGS),
        _api("STREAM.INFO", s.STREAM_USAGE),
        _api("STREAM.NAMES"),
        f"{s.PREFIX}.call.>",
        f"{s.PREFIX}.actor.>",
        f"{s.PREFIX}.durable.>",
        s.exec_request("*", "*"),
        s.SCHED_DEMAND,
        s.SCHED_WHY,
        _api("STREAM.INFO", calls),
        _api("CONSUMER.CREATE", calls, "*"),
        _api("CONSUMER.CREATE", calls, "*", ">"),
        _api("CONSUMER.DURABLE.CREATE", calls, "*"),
        _api("CONSUMER.INFO", calls, "*"),
        _api("CONSUMER.MSG.NEXT", calls, "*"),
        s.js_ack(calls),
        *_write_keys(s.KV_NODES, [node]),
        *_write_keys(s.KV_HOLDINGS, [node]),
        *_write_keys(s.KV_ACTORS, [">"]),
        *_write_keys(s.KV_RESULTS, [">"]),
        *_write_keys(s.KV_LEASE, ["store-repair"]),
        *_store_client(),
        *_read_objects(s.OBJ_BUNDLES),
    ]
    for bucket in (
        s.KV_NODES,
        s.KV_PLACE,
        s.KV_APPS,
        s.KV_PRINCIPALS,
        s.KV_GRANTS,
        s.KV_LEASE,
        s.KV_ACTORS,
        s.KV_RESULTS,
        s.KV_FLOWS,
    ):
        pub += _read_bucket(bucket)
    sub = [
        s.inbox(f"_I.{node}"),
        s.CTL_NODES,
        s.CTL_PS,
        f"{s.PREFIX}.call.>",
        f"{s.PREFIX}.actor.>",
        s.store(node, "*"),
        s.STORE_LOCATE,
        s.STORE_REPAIR,
    ]
    if scope.schedules:
        pub += [
            s.EVENTS_SCHED,
            *_write_keys(s.KV_PLACE, ["*"]),
            *_write_keys(s.KV_LEASE, [s.LEASE_KEY]),
            *_read_bucket(s.KV_CTX),
        ]
        sub += [s.HEARTBEATS, s.SCHED_WHY, s.SCHED_DEMAND]
    # A leaf link carries a message, either way, only on subjects it may both publish
    # and subscribe to (nats-server#2454; checked in tests/multi/test_listen.py). What
    # crosses is still only what someone publishes there and what the other side has
    # interest in, and each process on the leaf is held to its own credential there.
    both = list(dict.fromkeys([*pub, *sub]))
    # Replies from this machine's responders to callers elsewhere: a leaf link has no
    # allow-responses, so it may publish to every inbox (never read one: that needs
    # subscribe, and the link subscribes only to its own machine's).
    return [*both, "_I.>"], both, 1


def permissions(role: str, scope: Scope) -> Permissions:
    """The publish and subscribe allow-lists of ``role`` for ``scope``."""
    pub, sub = _own(scope)
    responses = 0
    node = scope.node
    if role == "admin":
        pub = [">"]
        sub += [s.EVENTS_ALL, s.PREFIX + ".>", "$KV.>", "$O.>"]
    elif role == "person":
        pub += _caller(scope)
        pub += _runner(scope)
        if scope.deploys:
            pub += _write_objects(s.OBJ_BUNDLES)
            pub += _get_keys(s.KV_APPS, scope.deploys)
        if scope.stores:
            pub += _store_client()
        if scope.calls or scope.deploys or scope.runs:
            # The mesh's map: its nodes, what runs where, the apps deployed (`motes
            # nodes`, `ps`, `apps`): metadata, no payloads and no secrets.
            pub += [s.CTL_NODES, s.CTL_PS, *_read_bucket(s.KV_NODES), *_read_bucket(s.KV_APPS)]
            pub += _read_stream(s.STREAM_USAGE)  # `motes usage --since`: metadata too
            sub += [s.EVENTS_ALL]
    elif role == "node":
        pub += [
            s.heartbeat(node),
            s.instance_events(node),
            s.worker(node, "*"),
            s.log("*", "*", node),
            _api("STREAM.INFO", s.STREAM_LOGS),
            s.usage(node),
            _api("STREAM.INFO", s.STREAM_USAGE),
            *_write_keys(s.KV_NODES, [node]),
            *_read_bucket(s.KV_NODES),
            *_read_bucket(s.KV_PLACE),
            *_read_bucket(s.KV_APPS),
            *_read_bucket(s.KV_PRINCIPALS),
            *_read_bucket(s.KV_GRANTS),
            *_get_keys(s.KV_LEASE, [s.LEASE_KEY]),
            *_read_objects(s.OBJ_BUNDLES),
        ]
        sub += [s.CTL_NODES, s.CTL_PS, s.instance_load(node), s.exec_request(node, "*")]
        responses = 1
    elif role == "store":
        pub += [
            *_store_client(),
            *_write_keys(s.KV_HOLDINGS, [node]),
            *_read_bucket(s.KV_LEASE),
            *_write_keys(s.KV_LEASE, ["store-repair"]),
        ]
        sub += [s.store(node, "*"), s.STORE_LOCATE, s.STORE_REPAIR]
        responses = 1
    elif role == "scheduler":
        pub += [
            s.EVENTS_SCHED,
            *_write_keys(s.KV_PLACE, ["*"]),
            *_write_keys(s.KV_LEASE, [s.LEASE_KEY]),
            *_read_bucket(s.KV_LEASE),
            *_read_bucket(s.KV_PLACE),
            *_read_bucket(s.KV_NODES),
            *_read_bucket(s.KV_APPS),
            *_read_bucket(s.KV_CTX),
            *_read_bucket(s.KV_HOLDINGS),
            *_read_bucket(s.KV_PRINCIPALS),
            *_read_bucket(s.KV_GRANTS),
        ]
        sub += [s.HEARTBEATS, s.SCHED_WHY, s.SCHED_DEMAND]
        responses = 1
    elif role == "worker":  # a warm worker: it answers its agent, nothing else yet
        pub += [s.instance_load(node)]
        sub += [s.worker(node, scope.wid)]
        responses = 1
    elif role == "instance":  # the shell of one instance of app.mote
        app, mote = scope.app, scope.mote
        pub += [
            s.instance_load(node),
            s.durable(app, "*"),
            *_consume(s.STREAM_CALLS, s.durable_consumer(app, mote), s.durable(app, mote)),
            *_get_keys(s.KV_ACTORS, [s.actor_kv_key(app, mote, ">")]),
            *_write_keys(s.KV_ACTORS, [s.actor_kv_key(app, mote, ">")]),
            *_get_keys(s.KV_RESULTS, [f"c.{app}.{mote}.>", f"s.{app}.*.{mote}.>", f"f.{app}.>"]),
            *_write_keys(s.KV_RESULTS, [f"c.{app}.{mote}.>", f"s.{app}.*.{mote}.>", f"f.{app}.>"]),
            *_get_keys(s.KV_FLOWS, [s.flow_kv_key(app, "*")]),
            *_read_bucket(s.KV_PLACE),
            *_get_keys(s.KV_LEASE, [s.LEASE_KEY]),
            *_read_bucket(s.KV_PRINCIPALS),
            *_read_bucket(s.KV_GRANTS),
        ]
        sub += [
            s.call(app, mote),
            s.actor(app, mote, "*"),
            s.worker(node, scope.wid),
        ]
        responses = 1
    elif role == "link":
        pub, sub, responses = _link(scope)
    elif role == "app":  # a mote's own code: what its deployer may do, and the store
        pub += _caller(scope)
        pub += _store_client()
    elif role == "authority":
        pub = [">"]
        sub += [s.AUTH_ALL]
        responses = 1
    elif role == "invitee":  # an invite's own credential: it may ask to join, once
        pub = [s.auth("join", scope.principal)]
    elif role == "identity":  # a principal's long-lived credential: a new session only
        pub = [s.auth("renew", scope.principal)]
    else:
        raise ValueError(f"no such role {role!r}")
    pub += list(scope.extra_pub)
    return Permissions(
        pub_allow=tuple(dict.fromkeys(_both_forms(pub))),
        sub_allow=tuple(dict.fromkeys(sub)),
        responses=responses,
        response_ttl_s=RESPONSE_TTL_S if responses else 0.0,
    )
