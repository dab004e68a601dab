"""The node's side of ``run`` grants: whose instances it may start, and their budgets.

The scheduler already places by the grants (``scheduler/policy/trust.py``); the node
checks again, because its owner's consent is the node's to keep, whatever a scheduler
decides. For an instance of an app deployed by someone other than the node's owner:

- no ``run`` grant here, or a native mote under a grant without ``native``: refused
  (``Forbidden``);
- ``instances``: at most that many of the person's instances at once (one of an app's
  previous version, finishing while its new version starts, does not count);
- ``memory_mb``: the worker's memory limit, by a cgroup where this machine lets the
  node make one (``sandbox/_cgroup.py``, as confined runs use), else ``RLIMIT_AS``;
- ``cpu_s_per_day``: CPU seconds the person's instances here used today (UTC), from the
  meter's per-instance totals; past it their instances are stopped, new ones refused
  (``OverBudget``) until the day ends, and the heartbeat says so (``Heartbeat.spent``)
  so that the scheduler places them elsewhere.

``hosting`` reads the app's record and the grants; ``Budgets`` is pure (readings and
times in, decisions out); the agent does the rest.
The day's count lives in memory: restarting the node (its owner's act) starts it over.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Forbidden, OverBudget
from ..identity.grants import RunTerms, run_terms
from ..identity.records import open_app
from ..sandbox._cgroup import Cgroup
from ..trust.records import read_trust
from ..wire import resources
from ..wire.bus import Bus
from ..wire.messages import InstanceSpec, NodeRecord

__all__ = ["Budgets", "Hosted", "cap_memory", "hosting"]

log = logging.getLogger(__name__)

CPU = "cpu_s_per_day"
INSTANCES = "instances"


@dataclass(frozen=True, slots=True)
class Hosted:
    """Whose instance this is, and the terms it runs under here."""

    person: str
    terms: RunTerms
    sandbox: str = "native"
    """How the signed app record declares the mote (``MoteSpec.sandbox``)."""


async def hosting(
    bus: Bus, node: NodeRecord, owner: str, spec: InstanceSpec, *, mesh_key: bytes, meter: str
) -> Hosted | None:
    """Whose instance ``spec`` is and its terms on ``node``, owned by ``owner`` (None:
    the owner deployed it); ``Forbidden`` if the owner's grants do not let it run here.
    The grants are read only for someone else's app: the owner's own start at once."""
    entry = await (await bus.kv(resources.APPS)).get(spec.app)
    if entry is None or not entry.value:
        raise Forbidden("?", "run", spec.app, "no such app")
    record, signer = open_app(entry.value)
    if signer == owner:
        return None
    what = f"{spec.app}.{spec.mote} on node {node.name}"
    terms = run_terms((await read_trust(bus, mesh_key)).grants, signer, node.id)
    if terms is None:
        raise Forbidden(signer, "run", what, f"{owner or 'its owner'} granted no `run` here")
    mote = next((m for m in record.motes if m.name == spec.mote), None)
    if mote is not None and mote.sandbox == "native" and not terms.native:
        raise Forbidden(signer, "run", what, "run grant without native: only sandboxed motes")
    if terms.cpu_s_per_day is not None and meter == "off":
        raise Forbidden(signer, "run", what, "a cpu_s_per_day budget needs the meter on")
    return Hosted(signer, terms, mote.sandbox if mote is not None else "native")


def check_bundle(bundle_dir: Path, spec: InstanceSpec, hosted: Hosted) -> None:
    """The worker picks the host from the bundle's manifest; the grant was checked
    against the app record's declaration. A bundle that would run natively a mote its
    record declares wasm (or the reverse) is refused: ``Forbidden``."""
    from ..sandbox.wasm import wasm_mote

    in_bundle = "wasm" if wasm_mote(bundle_dir, spec.mote) is not None else "native"
    if in_bundle != hosted.sandbox:
        what = f"{spec.app}.{spec.mote}"
        why = f"its bundle runs it {in_bundle}, its app record declares {hosted.sandbox}"
        raise Forbidden(hosted.person, "run", what, why)


def _day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass
class Budgets:
    """Per person: CPU seconds used today by their instances on this node."""

    node: str
    day: str = ""
    done: dict[str, float] = field(default_factory=dict)
    """Person -> CPU seconds today of their instances that ended."""
    live: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    """Instance id -> (person, its meter's CPU total, that total when today began)."""
    spent: dict[str, str] = field(default_factory=dict)
    """Person -> the budget of theirs used up today (what the heartbeat reports)."""

    def admit(self, hosted: Hosted, running: int, now: float) -> None:
        """``OverBudget`` unless one more instance of ``hosted.person`` may start, with
        ``running`` of theirs already here."""
        self._roll(now)
        terms = hosted.terms
        if terms.instances is not None and running >= terms.instances:
            raise OverBudget(hosted.person, self.node, INSTANCES, running, terms.instances)
        if terms.cpu_s_per_day is not None:
            used = self.used(hosted.person, now)
            if used >= terms.cpu_s_per_day:
                raise OverBudget(hosted.person, self.node, CPU, used, terms.cpu_s_per_day)

    def record(self, iid: str, hosted: Hosted, cpu_s: float, now: float) -> OverBudget | None:
        """An instance's meter reported ``cpu_s`` in all; the person's CPU budget, if
        this reading used it up (their instances must stop), else None."""
        self._roll(now)
        _, _, base = self.live.get(iid, (hosted.person, cpu_s, 0.0))
        self.live[iid] = (hosted.person, cpu_s, base)
        limit = hosted.terms.cpu_s_per_day
        if limit is None or hosted.person in self.spent:
            return None
        used = self.used(hosted.person, now)
        if used < limit:
            return None
        self.spent[hosted.person] = CPU
        return OverBudget(hosted.person, self.node, CPU, used, limit)

    def ended(self, iid: str) -> None:
        """The instance stopped: what it used today stays counted."""
        entry = self.live.pop(iid, None)
        if entry is not None:
            person, total, base = entry
            self.done[person] = self.done.get(person, 0.0) + max(total - base, 0.0)

    def used(self, person: str, now: float) -> float:
        self._roll(now)
        live = sum(max(t - b, 0.0) for p, t, b in self.live.values() if p == person)
        return self.done.get(person, 0.0) + live

    def _roll(self, now: float) -> None:
        """A new UTC day: every count starts from zero, every spent budget is back."""
        today = _day(now)
        if today == self.day:
            return
        self.day = today
        self.done.clear()
        self.spent.clear()
        self.live = {iid: (p, total, total) for iid, (p, total, _) in self.live.items()}


def cap_memory(pid: int, memory_mb: int) -> Cgroup | None:
    """Limit process ``pid`` (a worker) to ``memory_mb``: by a cgroup it is moved into
    (returned: the caller removes it once the worker is gone), else by ``RLIMIT_AS``."""
    group = Cgroup.make(None, memory_mb)
    if group is not None and group.memory is not None:
        try:
            group.adopt(pid)
            return group
        except OSError as exc:
            log.warning("could not move worker %d into a memory cgroup: %s", pid, exc)
    if group is not None:
        group.remove()
    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ProcessLookupError):
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
    return None
