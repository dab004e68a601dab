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
    motes.node.{node}.load             that node's workers report load to their agent
    motes.w.{worker}                   one worker process's control requests
    motes.log.{app}.{mote}.{node}      worker output, kept in the MOTES_LOGS stream
"""

from __future__ import annotations

PREFIX = "motes"

# JetStream names. KV buckets hold state that must survive; the object store holds bundles.
KV_NODES = "motes_nodes"
KV_APPS = "motes_apps"
KV_PLACE = "motes_place"
KV_LEASE = "motes_lease"
KV_ACTORS = "motes_actors"
OBJ_BUNDLES = "motes_bundles"
STREAM_LOGS = "MOTES_LOGS"

LEASE_KEY = "scheduler"
CTL_NODES = f"{PREFIX}.ctl.nodes"
CTL_PS = f"{PREFIX}.ctl.ps"
SCHED_WHY = f"{PREFIX}.sched.why"
SCHED_DEMAND = f"{PREFIX}.sched.demand"
HEARTBEATS = f"{PREFIX}.hb.*"
LOGS_ALL = f"{PREFIX}.log.>"


def call(app: str, mote: str) -> str:
    return f"{PREFIX}.call.{app}.{mote}"


def call_queue(app: str, mote: str) -> str:
    return f"q.{app}.{mote}"


def actor(app: str, mote: str, shard: int) -> str:
    return f"{PREFIX}.actor.{app}.{mote}.{shard}"


def heartbeat(node: str) -> str:
    return f"{PREFIX}.hb.{node}"


def node_ctl(node: str) -> str:
    return f"{PREFIX}.node.{node}.ctl"


def worker(worker_id: str) -> str:
    return f"{PREFIX}.w.{worker_id}"


def instance_load(node: str) -> str:
    """Workers on ``node`` report their InstanceStatus here, for the agent's heartbeats."""
    return f"{PREFIX}.node.{node}.load"


def log(app: str, mote: str, node: str) -> str:
    return f"{PREFIX}.log.{app}.{mote}.{node}"


def log_filter(app: str | None = None, mote: str | None = None) -> str:
    """A subject filter over the log stream for one app, one mote, or everything."""
    if app is None:
        return LOGS_ALL
    if mote is None:
        return f"{PREFIX}.log.{app}.>"
    return f"{PREFIX}.log.{app}.{mote}.*"


def actor_kv_key(app: str, mote: str, key_token: str) -> str:
    """KV key of one actor activation's state; ``key_token`` is already KV-safe."""
    return f"{app}.{mote}.{key_token}"
