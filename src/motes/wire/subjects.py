"""The only place NATS subject strings, KV bucket and stream names are built.

Layout (``{node}``, ``{app}``, ``{mote}`` are validated names, never user free text)::

    motes.call.{app}.{mote}            calls to a function mote (queue group per mote)
    motes.actor.{app}.{mote}.{shard}   calls to an actor mote's shard
    motes.hb.{node}                    node heartbeats
    motes.ctl.nodes                    mesh query: every node agent answers NodeStatus
    motes.ctl.ps                       mesh query: every node agent answers its instances
    motes.sched.why                    asked of the scheduler leader only
    motes.sched.demand                 "a caller is waiting for this mote": to the leader
    motes.node.{node}.ctl              one node agent's control requests
    motes.exec.{node}.{principal}      run a native program confined on that node
                                       (``mesh.exec``): only ``principal`` may publish
    motes.node.{node}.load             that node's workers report load to their agent
                                       (the dashboard reads them all: INSTANCE_LOAD_ALL)
    motes.w.{node}.{worker}            one worker process's control requests
    motes.log.{app}.{mote}.{node}      worker output, kept in the MOTES_LOGS stream
    motes.durable.{app}.{mote}         durable calls, kept in the MOTES_CALLS work queue
    motes.store.{node}.put             store one share (piece) on that node's store service
    motes.store.{node}.get             read one share (piece) from it
    motes.store.{node}.tag             tell it which files its blobs belong to
    motes.store.locate                 every store service answers which shares it holds
    motes.store.repair                 one store service (queue group) checks/repairs a file
    motes.ev.sched                     the scheduler leader's decisions (node lost, placed)
    motes.ev.inst.{node}               instance state changes on one node
    motes.auth.{op}.{principal}        a principal's requests to the mesh's authority
    motes.audit                        the audit log (stream MOTES_AUDIT)
    motes.usage.{node}                 that node's meter reports (stream MOTES_USAGE)

The JetStream subjects behind buckets, streams and the object store have builders here
too (``kv_subject``, ``js_api``, ...), so what a principal may touch can be derived from
the same functions that name it.

KV keys of stored durable results (``{token}`` is a KV-safe spelling of a call id)::

    c.{app}.{mote}.{token}             the result of a durable call
    f.{app}.{flow}.{token}             the result of a flow item (its last stage's result)
    s.{app}.{flow}.{stage}.{token}     one stage's result for one flow item
"""

from __future__ import annotations

import base64
import re

PREFIX = "motes"
MESH_DOMAIN = "motes"
"""The JetStream domain of a mesh's lattice (the hubs'): leaves reach JetStream across
their link by naming it, so every client of a mesh names it too (one set of subjects)."""

# JetStream names. KV buckets hold state that must survive; the object store holds bundles.
KV_NODES = "motes_nodes"
KV_APPS = "motes_apps"
KV_PLACE = "motes_place"
KV_LEASE = "motes_lease"
KV_ACTORS = "motes_actors"
KV_CTX = "motes_ctx"
"""Owner context: key ``presence`` (node id where the user is), ``drain.{node}``."""
PRESENCE_KEY = "presence"
OBJ_BUNDLES = "motes_bundles"
STREAM_LOGS = "MOTES_LOGS"
KV_RESULTS = "motes_results"
KV_FLOWS = "motes_flows"
STREAM_CALLS = "MOTES_CALLS"
KV_STORE = "motes_store"
"""Mesh-wide store settings: key ``convergence`` holds the convergence secret."""
CONVERGENCE_KEY = "convergence"
KV_FILES = "motes_files"
KV_HOLDINGS = "motes_holdings"
KV_DATASETS = "motes_datasets"
KV_PRINCIPALS = "motes_principals"
"""Admitted principals (nodes, people), each record signed by the mesh."""
KV_GRANTS = "motes_grants"
"""Grants, each signed by its issuer; key = grant id."""
KV_HUBS = "motes_hubs"
"""The mesh's hubs (``Hub``, key = node id), written by the authority."""
KV_INVITES = "motes_invites"
"""Invites the authority made, and how often each was used (the authority's only)."""
STREAM_AUDIT = "MOTES_AUDIT"
STREAM_USAGE = "MOTES_USAGE"
"""What each node's calls used, one ``UsageReport`` a second at most, kept as history."""
USAGE_ALL = f"{PREFIX}.usage.*"
AUDIT = f"{PREFIX}.audit"
KV_BLOCKS = "motes_blocks"
"""Blocks (``motes.blocks``): key ``{block id}``, every revision kept a while (history)."""
KV_CELLS = "motes_cells"
"""Computed cells' results, by the hash of their inputs: key ``r.{hex}``."""

LEASE_KEY = "scheduler"
CTL_NODES = f"{PREFIX}.ctl.nodes"
CTL_PS = f"{PREFIX}.ctl.ps"
SCHED_WHY = f"{PREFIX}.sched.why"
SCHED_DEMAND = f"{PREFIX}.sched.demand"
HEARTBEATS = f"{PREFIX}.hb.*"
LOGS_ALL = f"{PREFIX}.log.>"
DURABLE_ALL = f"{PREFIX}.durable.>"
STORE_LOCATE = f"{PREFIX}.store.locate"
STORE_REPAIR = f"{PREFIX}.store.repair"
STORE_REPAIR_QUEUE = "q.store.repair"
AUTH_ALL = f"{PREFIX}.auth.*.*"
"""Every request to the authority (``*.*``, not ``>``: a hub tells a leaf of a
subscription only if the leaf's link may use a subject it matches, token by token)."""
EVENTS_ALL = f"{PREFIX}.ev.>"
EVENTS_SCHED = f"{PREFIX}.ev.sched"
INSTANCE_LOAD_ALL = f"{PREFIX}.node.*.load"
"""Every worker's load reports (``InstanceStatus``), on every node."""


def auth(op: str, principal: str) -> str:
    """A request of ``principal`` to the authority: only it may publish here."""
    return f"{PREFIX}.auth.{op}.{principal}"


def parse_auth(subject: str) -> tuple[str, str] | None:
    """``(op, principal)`` of an auth request subject."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != [PREFIX, "auth"]:
        return None
    return parts[2], parts[3]


def exec_request(node: str, principal: str) -> str:
    """``principal`` asks ``node`` to run a program confined: only it may publish here,
    so the node knows who asks (either may be ``*`` in a permission)."""
    return f"{PREFIX}.exec.{node}.{principal}"


def parse_exec(subject: str) -> tuple[str, str] | None:
    """``(node, principal)`` of an exec request subject."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != [PREFIX, "exec"]:
        return None
    return parts[2], parts[3]


def usage(node: str) -> str:
    """``node``'s usage reports (stream ``MOTES_USAGE``): only that node may publish."""
    return f"{PREFIX}.usage.{node}"


def instance_events(node: str) -> str:
    """Instance state changes on ``node`` (its agent publishes them)."""
    return f"{PREFIX}.ev.inst.{node}"


# --- JetStream's own subjects --------------------------------------------------------------


def kv_stream(bucket: str) -> str:
    """The stream behind KV bucket ``bucket``."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str = ">", *, via_domain: str = "") -> str:
    """The subject a KV write to ``key`` (or a filter) of ``bucket`` is published on;
    ``via_domain``: written from a leaf, through the hubs' mapping of their JetStream
    domain (``$JS.{domain}.API.$KV...``)."""
    plain = f"$KV.{bucket}.{key}"
    return f"$JS.{via_domain}.API.{plain}" if via_domain else plain


def obj_stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def obj_subjects(bucket: str) -> list[str]:
    """Chunks and metadata of every object in ``bucket``."""
    return [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"]


def js_api(op: str, *names: str, domain: str = "") -> str:
    """A JetStream API subject: ``js_api("STREAM.INFO", "KV_motes_nodes")``."""
    head = f"$JS.{domain}.API" if domain else "$JS.API"
    return ".".join([head, op, *names])


def js_ack(stream: str) -> str:
    """Acks (and naks, progress, terms) of messages delivered from ``stream``."""
    return f"$JS.ACK.{stream}.>"


def js_flow_control(stream: str) -> str:
    return f"$JS.FC.{stream}.>"


def inbox(prefix: str) -> str:
    """Every reply subject under one principal's inbox prefix."""
    return f"{prefix}.>"


def store(node: str, op: str) -> str:
    """A node's store service: ``op`` is ``put``, ``get`` or ``tag``."""
    return f"{PREFIX}.store.{node}.{op}"


def call(app: str, mote: str) -> str:
    return f"{PREFIX}.call.{app}.{mote}"


def call_queue(app: str, mote: str) -> str:
    return f"q.{app}.{mote}"


def actor(app: str, mote: str, shard: int | str) -> str:
    return f"{PREFIX}.actor.{app}.{mote}.{shard}"


def heartbeat(node: str) -> str:
    return f"{PREFIX}.hb.{node}"


def node_ctl(node: str) -> str:
    return f"{PREFIX}.node.{node}.ctl"


def worker(node: str, worker_id: str) -> str:
    """One worker's control subject (``worker_id`` may be ``*`` in a permission)."""
    return f"{PREFIX}.w.{node}.{worker_id}"


def instance_load(node: str) -> str:
    """Workers on ``node`` report their InstanceStatus here, for the agent's heartbeats."""
    return f"{PREFIX}.node.{node}.load"


def log(app: str, mote: str, node: str) -> str:
    return f"{PREFIX}.log.{app}.{mote}.{node}"


def log_filter(app: str | None = None, mote: str | None = None, node: str | None = None) -> str:
    """A subject filter over the log stream for one app, one mote, one node, or everything."""
    if node is not None:
        return f"{PREFIX}.log.{app or '*'}.{mote or '*'}.{node}"
    if app is None:
        return LOGS_ALL
    if mote is None:
        return f"{PREFIX}.log.{app}.>"
    return f"{PREFIX}.log.{app}.{mote}.*"


def drain_key(node: str) -> str:
    return f"drain.{node}"


def actor_kv_key(app: str, mote: str, key_token: str) -> str:
    """KV key of one actor activation's state; ``key_token`` is already KV-safe."""
    return f"{app}.{mote}.{key_token}"


def durable(app: str, mote: str) -> str:
    """Durable calls to one function mote (stream ``MOTES_CALLS``)."""
    return f"{PREFIX}.durable.{app}.{mote}"


def parse_durable(subject: str) -> tuple[str, str] | None:
    """``(app, mote)`` of a durable-call subject, or None if it is not one."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != [PREFIX, "durable"]:
        return None
    return parts[2], parts[3]


def durable_consumer(app: str, mote: str) -> str:
    """The one consumer all instances of a mote pull durable calls from.

    ``~`` cannot occur in app or mote names, so two motes never share a consumer.
    """
    return f"d~{app}~{mote}"


MAX_CALL_ID = 256
"""Longest call id (characters): ids end up in KV keys and headers, which have limits."""

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,3}")


def call_token(call_id: str) -> str:
    """A KV-safe, one-to-one spelling of a call id for result keys and message ids.

    Plain ids (letters, digits, ``_``, ``-``, up to three dots) stay as they are, so a
    batch's results share a key prefix; anything else is ``=`` and its base64url.
    """
    if _PLAIN_ID.fullmatch(call_id):
        return call_id
    return "=" + base64.urlsafe_b64encode(call_id.encode()).decode().rstrip("=")


def call_result_key(app: str, mote: str, token: str) -> str:
    """KV key (bucket ``motes_results``) of a durable call's result; ``token`` is KV-safe."""
    return f"c.{app}.{mote}.{token}"


def call_results(app: str, mote: str, prefix: str) -> str:
    """A KV key filter matching the results of calls whose ids are ``{prefix}.{something}``."""
    return f"c.{app}.{mote}.{prefix}.*"


def flow_result_key(app: str, flow: str, token: str) -> str:
    """KV key of a flow item's result (what its last stage returned)."""
    return f"f.{app}.{flow}.{token}"


def stage_result_key(app: str, flow: str, stage: str, token: str) -> str:
    """KV key of one stage's result for one flow item: a redelivered stage is not re-run."""
    return f"s.{app}.{flow}.{stage}.{token}"


def cell_key(digest_hex: str) -> str:
    """KV key (bucket ``motes_cells``) of a computed cell's result for one set of inputs."""
    return f"r.{digest_hex}"


def flow_kv_key(app: str, flow: str) -> str:
    """KV key (bucket ``motes_flows``) of a flow's current definition."""
    return f"{app}.{flow}"
