"""Message types on the lattice. Each carries a version in its tag.

Call-path messages are ``array_like`` (positional, compact, fast); control-plane messages
are maps, so fields can be added without breaking older readers. A message whose tag is
not known (a newer version, or garbage) is rejected by the decoder with BadMessage.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

__all__ = [
    "EXEC_REPLY_OVERHEAD",
    "LATENCY_BUCKETS",
    "TRACE_HEADER",
    "TRACE_INSTANCE",
    "TRACE_NODE",
    "TRACE_WALL_US",
    "ActorCall",
    "AppRecord",
    "Batch",
    "BatchReply",
    "Call",
    "CallCost",
    "Confinement",
    "DurableCall",
    "Err",
    "ExecRequest",
    "ExecResult",
    "FlowDef",
    "Heartbeat",
    "InstanceSpec",
    "InstanceState",
    "InstanceStatus",
    "Inventory",
    "Load",
    "LogBatch",
    "LogLine",
    "MeterTotals",
    "MoteQuery",
    "MoteSpec",
    "NodeAssignment",
    "NodeRecord",
    "NodeState",
    "NodeStatus",
    "Ok",
    "Power",
    "PowerProfile",
    "Reply",
    "Request",
    "SchedEvent",
    "UsageReport",
    "UsageRow",
    "Verdict",
    "WhyReply",
    "WorkerAssign",
    "WorkerControl",
    "WorkerQuery",
    "WorkerStop",
]

# --- lifecycles (the wire carries their values as strings) -------------------------------


class NodeState(enum.StrEnum):
    STARTING = "starting"
    """Announced, but its store service is not up yet."""
    READY = "ready"
    DEGRADED = "degraded"
    """Serving motes, but its store service is down (it is being restarted)."""
    DRAINING = "draining"
    UNREACHABLE = "unreachable"
    """Joined, but did not answer (as the client sees it)."""


class InstanceState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    CRASHED = "crashed"
    """Its worker failed; it is started again after a backoff."""
    CRASHLOOP = "crashloop"
    """It failed five times or more in a row."""
    REFUSED = "refused"
    """The node will not run it: its deployer's ``run`` grant here does not allow it
    (no ``native``, or a budget used up); asked again after a backoff."""


# --- the call path ---------------------------------------------------------------------


class Call(msgspec.Struct, frozen=True, array_like=True, tag="c1"):
    """One call to a function mote."""

    args: list[Any]
    kwargs: dict[str, Any]
    timeout_ms: int


class Batch(msgspec.Struct, frozen=True, array_like=True, tag="b1"):
    """Several calls to one function mote in one message (``map`` sends these)."""

    items: list[list[Any]]
    timeout_ms: int


class ActorCall(msgspec.Struct, frozen=True, array_like=True, tag="a1"):
    """One call to a method of the actor activation named by ``key``."""

    key: str
    method: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout_ms: int


Request = Call | Batch | ActorCall

TRACE_HEADER = "Motes-Trace"
"""A request header asking the worker to say who served the call (any value)."""
TRACE_NODE = "Motes-Node"
"""Reply header: the id of the node whose worker served a traced call."""
TRACE_INSTANCE = "Motes-Instance"
"""Reply header: the instance that served it."""
TRACE_WALL_US = "Motes-Wall-Us"
"""Reply header: microseconds the worker spent on it, decode to reply."""


class DurableCall(msgspec.Struct, frozen=True, array_like=True, tag="d1"):
    """A call kept in the ``MOTES_CALLS`` work queue until its result is stored.

    ``call_id`` names the result: a second call with the same id is not run again. For
    a flow, ``call_id`` is the item's id and the subject names the stage to run.
    """

    call_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout_ms: int
    flow: str = ""
    """The flow this item travels ("" for a plain durable call)."""
    path: list[str] = []
    """Flows: the stages after this one, in the definition the item last moved under."""
    done: list[str] = []
    """Flows: the stages this item has already run; it never runs one twice."""


class Ok(msgspec.Struct, frozen=True, array_like=True, tag="r1"):
    value: Any


class Err(msgspec.Struct, frozen=True, array_like=True, tag="e1"):
    """A typed error: ``code`` is a ``MotesError.code``, ``fields`` rebuild it."""

    code: str
    message: str
    fields: dict[str, Any]


class BatchReply(msgspec.Struct, frozen=True, array_like=True, tag="br1"):
    results: list[Ok | Err]
    wall_us: int = 0
    """Time the worker spent on the whole batch: how ``map`` sizes the batches after it."""


Reply = Ok | Err | BatchReply

# --- apps and placement ----------------------------------------------------------------

MoteKind = Literal["function", "actor", "command"]
"""``command``: a function mote whose function says which native program to run; the
serving node runs it confined (``sandbox.command``). Placed and called like a function."""


class Confinement(msgspec.Struct, frozen=True, kw_only=True, tag="conf1"):
    """What a confined program may see and use (``motes.sandbox.confine``).

    ``files`` and ``writable`` map a path inside the sandbox to a path on the node
    (read-only and read-write); nothing else of the node's files is visible beyond the
    read-only system trees. Sizes are MiB; ``output_bytes`` bounds stdout plus stderr.
    """

    files: dict[str, str] = {}
    writable: dict[str, str] = {}
    net: bool = False
    timeout_s: float = 30.0
    memory_mb: int = 256
    procs: int = 64
    output_bytes: int = 16 * 1024 * 1024
    tmp_mb: int = 64
    file_mb: int = 1024
    """The largest file it may write (``RLIMIT_FSIZE``)."""
    env: dict[str, str] = {}
    cwd: str = "/tmp"


class ExecRequest(msgspec.Struct, frozen=True, kw_only=True, tag="exec1"):
    """Run ``argv`` on one node, confined as ``confine`` says (``mesh.exec``)."""

    argv: list[str]
    confine: Confinement = Confinement()
    stdin: bytes = b""


class ExecResult(msgspec.Struct, frozen=True, kw_only=True, tag="execr1"):
    """A confined program that ran to its end on ``node`` (whatever its exit status)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    node: str
    wall_s: float
    cpu_s: float
    """CPU time of its whole process tree, by cgroup (0 where there is none)."""
    peak_mb: float = 0.0
    backend: str = ""
    """``bwrap`` or ``landlock``: what confined it."""


EXEC_REPLY_OVERHEAD = 4096
"""Bytes of an ``ExecResult`` reply that are not output: the lattice's message limit less
this is the most stdout plus stderr a program run with ``mesh.exec`` may write."""


class MoteSpec(msgspec.Struct, frozen=True, kw_only=True, tag="mote1"):
    """What an app declares about one mote: the scheduler's input."""

    name: str
    kind: MoteKind = "function"
    min: int = 1
    max: int = 8
    needs: dict[str, Any] = {}
    labels: dict[str, str] = {}
    concurrency: int = 1
    """Calls one instance serves at once (1 for sync handlers); the autoscaler's target."""
    spread: Literal["spread", "pack"] = "spread"
    shards: int = 64
    """Actors only: how many shards the key space is split into."""
    usage: Literal["any", "batch", "interactive"] = "any"
    """Owner context: ``batch`` avoids machines in use or on battery; ``interactive``
    runs where the user is (``motes here``). Declared as ``kind=`` on the decorator."""
    idle: float = 30.0
    """Seconds without work after which instances above ``min`` are stopped."""
    reads: list[str] = []
    """Stored data the mote reads, as declared (capability strings); deploy turns each
    into its storage index (hex), which is all the scheduler's data-locality rule needs."""
    sandbox: Literal["native", "wasm"] = "native"
    """How its instances run: ``native`` (an ordinary Python process, only on nodes whose
    owner granted the app's signer ``run`` with ``native``) or ``wasm`` (a WebAssembly
    component under wasmtime, confined by fuel, a deadline and a memory limit)."""
    energy: bool = True
    """The ``energy`` placement rule prefers nodes that spend fewer (estimated) joules
    per call of it; ``False``: place it without regard to joules (a latency-sensitive
    mote that wants the fastest machine, not the most frugal)."""
    fuel: int = 0
    """wasm only: the fuel (wasmtime's instruction count) one call may use; 0 outside wasm.
    The decorator's default is ``10**10``, a few seconds of CPU."""
    memory_mb: int = 0
    """wasm only: the most linear memory an instance may have, MiB (default 256)."""
    files: dict[str, str] = {}
    """wasm only: its view, read-only: a directory in the guest (absolute) -> a directory
    under the node's ``appdata/<app>/`` (relative). Nothing else is visible."""
    writable: dict[str, str] = {}
    """wasm only: as ``files``, read-write."""


class AppRecord(msgspec.Struct, frozen=True, kw_only=True, tag="app1"):
    """A deployed app: the desired state the scheduler places."""

    name: str
    digest: str
    module: str
    motes: list[MoteSpec]
    requirements: list[str] = []
    deployed_at: float = 0.0
    previous: str | None = None
    flows: dict[str, list[str]] = {}
    """Flows as declared in the app (``App.flow``): name -> stages."""


class FlowDef(msgspec.Struct, frozen=True, kw_only=True, tag="flow1"):
    """A flow's current wiring (KV ``motes_flows``); ``motes flow set`` replaces it."""

    app: str
    name: str
    stages: list[str]
    updated_at: float = 0.0


class InstanceSpec(msgspec.Struct, frozen=True, kw_only=True, tag="inst1"):
    """One instance the scheduler wants running on a node."""

    iid: str
    app: str
    mote: str
    digest: str
    module: str
    kind: MoteKind = "function"
    shards: list[int] = []
    nshards: int = 0
    concurrency: int = 0


class NodeAssignment(msgspec.Struct, frozen=True, kw_only=True, tag="assign1"):
    """Everything one node should run; nodes converge on it (level-triggered)."""

    node: str
    epoch: int
    """The scheduler lease revision that wrote this; a higher epoch supersedes."""
    instances: list[InstanceSpec]
    cause: str = ""
    """The id of the scheduler event that led to this assignment."""


class SchedEvent(msgspec.Struct, frozen=True, kw_only=True, tag="sev1"):
    """A decision the scheduler leader carried out (subject ``motes.ev.sched``)."""

    kind: Literal["node_lost", "placed"]
    node: str
    cause: str
    """The id of the scheduler event that led to it (as in ``NodeAssignment.cause``)."""
    assignment: NodeAssignment | None = None
    """For ``placed``: everything the node now runs."""


# --- nodes -----------------------------------------------------------------------------


class Inventory(msgspec.Struct, frozen=True, kw_only=True, tag="inv1"):
    cpus: int
    memory_mb: int
    arch: str
    os: str
    gpus: int = 0
    gpu_names: list[str] = []
    screen: bool = False
    camera: bool = False


class PowerProfile(msgspec.Struct, frozen=True, kw_only=True):
    """The node's power model (``motes.meter.power.PowerModel``), as it advertises it:
    what the ``energy`` placement rule estimates with where a mote has not run yet."""

    idle_w: float
    """Watts per core at idle."""
    max_w: float
    """Watts per core at full load: the joules of one CPU second under the model."""
    cores: int
    method: str
    """``model:{source}:{name}`` (source: ``config``, ``table`` or ``default``)."""
    band: float
    """Relative error of its estimates (0.3: +/- 30 %)."""


class NodeRecord(msgspec.Struct, frozen=True, kw_only=True, tag="node1"):
    """What a node publishes about itself when it joins (KV ``motes_nodes``)."""

    id: str
    name: str
    public_key: bytes
    host: str
    pid: int
    inventory: Inventory
    labels: dict[str, str] = {}
    started_at: float = 0.0
    version: str = ""
    machine: str = ""
    """Its machine (the nats-server it is attached to); empty: its own."""
    role: str = ""
    """``hub`` or ``leaf``: what its machine's server is in the mesh."""
    link: str = ""
    """For a leaf: the hubs its machine dials."""
    metrics: str = ""
    """Where the node agent serves its meter as OpenMetrics text (loopback HTTP)."""
    power_model: PowerProfile | None = None
    """Its power model; None: it advertises none (an older node, or the meter is off)."""


class Load(msgspec.Struct, frozen=True, kw_only=True, tag="load1"):
    instances: int = 0
    inflight: int = 0
    cpu_load: float = 0.0


class Power(msgspec.Struct, frozen=True, kw_only=True, tag="power1"):
    """Where the node's power comes from, read from /sys/class/power_supply or labels."""

    on_battery: bool = False
    battery_pct: float | None = None


class CallCost(msgspec.Struct, frozen=True, kw_only=True):
    """What one mote's calls on a node used since the node's previous heartbeat."""

    calls: int
    joules: float
    """Estimated by the serving worker's meter (``MeterTotals.joules``)."""
    cpu_s: float


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, tag="hb1"):
    node: str
    seq: int
    load: Load
    ready: list[str] = []
    """Instances on this node that are serving."""
    work: dict[str, int] = {}
    """Per instance: calls in flight plus calls queued at it (the autoscaler's signal)."""
    power: Power = Power()
    costs: dict[str, CallCost] = {}
    """Per mote (``app.mote``) that served calls since the previous heartbeat: what they
    used (the ``energy`` rule's measured joules per call)."""
    spent: dict[str, str] = {}
    """Person -> the budget of their ``run`` grant used up on this node (``cpu_s_per_day``):
    the node refuses their instances, so the scheduler places them elsewhere."""


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True, tag="nstat1"):
    record: NodeRecord
    state: str
    load: Load
    leader: bool = False


class MeterTotals(msgspec.Struct, frozen=True, kw_only=True, tag="meter1"):
    """What an instance's calls have used since it started (``motes.meter``)."""

    wall_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    peak_rss: int = 0
    """The instance's peak memory, bytes."""
    bytes_in: int = 0
    bytes_out: int = 0
    fuel: int = 0
    joules: float = 0.0
    method: str = ""
    """How ``joules`` was estimated: ``rapl`` or ``model:{source}:{name}``."""
    band: float = 0.0
    """Relative error of ``joules`` (0.5: +/- 50 %)."""


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """What one instance's calls used during a report's interval."""

    app: str
    mote: str
    iid: str
    calls: int = 0
    failed: int = 0
    meter: MeterTotals


class UsageReport(msgspec.Struct, frozen=True, kw_only=True, tag="usage1"):
    """One node's usage over ``[start, end)`` (unix seconds), stream ``MOTES_USAGE``."""

    node: str
    start: float
    end: float
    rows: list[UsageRow] = []


class InstanceStatus(msgspec.Struct, frozen=True, kw_only=True, tag="istat1"):
    iid: str
    app: str
    mote: str
    digest: str
    node: str
    state: str
    pid: int = 0
    inflight: int = 0
    queued: int = 0
    served: int = 0
    failed: int = 0
    restarts: int = 0
    detail: str = ""
    latency: dict[int, int] = {}
    """Calls served since the instance started, by latency bucket (``LATENCY_BUCKETS``
    per doubling, from 1 us: bucket ``i`` holds calls that took under ``2**((i+1)/4)``
    us); empty buckets are left out."""
    meter: MeterTotals | None = None
    """None: the node's meter is off."""


LATENCY_BUCKETS = 4
"""Latency buckets per doubling of time in ``InstanceStatus.latency``."""


# --- workers ---------------------------------------------------------------------------


class WorkerAssign(msgspec.Struct, frozen=True, kw_only=True, tag="wassign1"):
    """Sent by a node agent to a warm worker: load this bundle, serve this instance.

    In an authenticated mesh it also names (paths of 0600 files, never the secrets
    themselves) the instance's own credential, the one its user code gets, and the
    secret its stored data is keyed with."""

    spec: InstanceSpec
    bundle_dir: str
    node: str
    credentials: str = ""
    inbox: str = ""
    app_credentials: str = ""
    app_inbox: str = ""
    convergence: str = ""


class WorkerQuery(msgspec.Struct, frozen=True, kw_only=True, tag="wquery1"):
    """Asks a worker for its InstanceStatus."""


class WorkerStop(msgspec.Struct, frozen=True, kw_only=True, tag="wstop1"):
    """Asks a worker to stop taking calls, finish what it holds within ``grace_s``, exit."""

    grace_s: float = 10.0


WorkerControl = WorkerAssign | WorkerQuery | WorkerStop


class LogLine(msgspec.Struct, frozen=True, array_like=True):
    ts: float
    stream: str
    text: str


class LogBatch(msgspec.Struct, frozen=True, kw_only=True, tag="log1"):
    node: str
    app: str
    mote: str
    iid: str
    lines: list[LogLine]


# --- explanations ----------------------------------------------------------------------


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One rule's opinion of one node for one mote."""

    rule: str
    ok: bool
    score: float = 0.0
    reason: str = ""


class NodeVerdict(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    name: str
    placed: int
    verdicts: list[Verdict]


class MoteQuery(msgspec.Struct, frozen=True, kw_only=True, tag="mq1"):
    """Names one mote in a request to the scheduler (why, demand)."""

    app: str
    mote: str


class WhyReply(msgspec.Struct, frozen=True, kw_only=True, tag="why1"):
    mote: str
    desired: int
    placed: int
    nodes: list[NodeVerdict]
    note: str = ""

    def vetoes(self) -> list[str]:
        """Every distinct ``rule: reason`` that vetoed some node, sorted."""
        return sorted({f"{v.rule}: {v.reason}" for n in self.nodes for v in n.verdicts if not v.ok})
