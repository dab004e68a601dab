"""What one more call of a mote would cost in joules on each node: the ``energy`` rule's
input, kept by the scheduler (pure: records and heartbeats in, estimates out).

Nodes advertise their power model in their record (``NodeRecord.power_model``) and say
in every heartbeat what each mote's calls used since the previous one
(``Heartbeat.costs``, from the workers' meters). The book keeps, per (mote, node), an
exponentially weighted moving average of joules and CPU seconds per call, and estimates
a call of a mote on a node as, in this order:

1. ``measured``: that average, from its calls on that node;
2. ``model``: its CPU seconds per call (the mean over the nodes that measured it) times
   the node's full-load watts per core, which is how the meter itself turns CPU time
   into joules;
3. ``model``: the node's full-load watts per core alone, while no node has run the mote:
   the joules of one CPU second, the same unit on every node, so the ranking holds.

Measured joules are the meter's own estimates (a power model, with its error band), not
readings of a wattmeter: history replaces the guess of how much CPU a call takes on that
node, not the model of what a CPU second costs there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..wire.messages import CallCost, PowerProfile
from .policy._types import Estimate

__all__ = ["ALPHA", "EnergyBook"]

ALPHA = 0.3
"""Weight of the newest heartbeat's calls in a (mote, node) average."""

_MoteKey = tuple[str, str]


@dataclass(slots=True)
class _Cost:
    joules: float
    """Per call (moving average)."""
    cpu_s: float
    """Per call (moving average)."""
    calls: int
    """Calls seen in all."""


class EnergyBook:
    """Power models by node and measured costs by (mote, node)."""

    def __init__(self) -> None:
        self._models: dict[str, PowerProfile] = {}
        self._costs: dict[_MoteKey, dict[str, _Cost]] = {}
        self._ranked: list[tuple[float, str]] | None = None
        """Nodes by full-load watts per core, cheapest first (rebuilt when models change)."""

    # --- what the nodes say ------------------------------------------------------------

    def node(self, nid: str, model: PowerProfile | None) -> None:
        """A node's record (re)announced, with its power model or none."""
        if self._models.get(nid) == model:
            return
        if model is None:
            self._models.pop(nid, None)
        else:
            self._models[nid] = model
        self._ranked = None

    def drop_node(self, nid: str) -> None:
        self.node(nid, None)
        for per_node in self._costs.values():
            per_node.pop(nid, None)

    def drop_app(self, app: str) -> None:
        self._costs = {k: v for k, v in self._costs.items() if k[0] != app}

    def observe(self, nid: str, costs: dict[str, CallCost]) -> None:
        """One heartbeat's costs: ``app.mote`` -> what its calls used since the last one."""
        for qual, cost in costs.items():
            app, _, mote = qual.partition(".")
            if cost.calls <= 0 or not mote or not cost.joules >= 0 or not cost.cpu_s >= 0:
                continue  # nothing served, or a malformed report: no evidence
            joules, cpu = cost.joules / cost.calls, cost.cpu_s / cost.calls
            per_node = self._costs.setdefault((app, mote), {})
            seen = per_node.get(nid)
            if seen is None:
                per_node[nid] = _Cost(joules, cpu, cost.calls)
                continue
            seen.joules += ALPHA * (joules - seen.joules)
            seen.cpu_s += ALPHA * (cpu - seen.cpu_s)
            seen.calls += cost.calls

    # --- estimates ---------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """No power model and no history: nothing to estimate with (skip the work)."""
        return not self._models and not self._costs

    def knows(self, key: _MoteKey) -> bool:
        """Whether any node has measured calls of ``key``: then its estimates are its own,
        not the power models' alone, which every mote shares."""
        return key in self._costs

    def estimate(self, key: _MoteKey, nid: str) -> Estimate | None:
        """One more call of ``key`` on ``nid``; None if there is nothing to go on."""
        per_node = self._costs.get(key, {})
        seen = per_node.get(nid)
        if seen is not None:
            detail = f"{seen.joules:.3g} J/call measured here (average of {seen.calls} calls)"
            return Estimate(joules=seen.joules, source="measured", detail=detail)
        model = self._models.get(nid)
        if model is None:
            return None
        cpu = self._cpu_per_call(key)
        if cpu is None:
            detail = (
                f"{model.max_w:.3g} W/core at full load ({model.method}); "
                "no node has measured its calls yet"
            )
            return Estimate(joules=model.max_w, source="model", detail=detail)
        joules = cpu * model.max_w
        detail = (
            f"{joules:.3g} J/call by the power model: {cpu * 1e3:.3g} ms CPU/call measured "
            f"elsewhere x {model.max_w:.3g} W/core ({model.method})"
        )
        return Estimate(joules=joules, source="model", detail=detail)

    def least(self, key: _MoteKey, alive: Callable[[str], bool]) -> float:
        """The lowest estimate of ``key`` on any live node (0.0: no node has one).

        Cheap on a large mesh: the measured nodes of the mote (few), and the first live,
        unmeasured node in the ranking by watts, which is the cheapest of the rest.
        """
        per_node = self._costs.get(key, {})
        best = min((c.joules for nid, c in per_node.items() if alive(nid)), default=None)
        if self._ranked is None:
            self._ranked = sorted((m.max_w, nid) for nid, m in self._models.items())
        cpu = self._cpu_per_call(key)
        for watts, nid in self._ranked:
            if nid not in per_node and alive(nid):
                modelled = watts * (1.0 if cpu is None else cpu)
                return modelled if best is None else min(best, modelled)
        return best or 0.0

    def _cpu_per_call(self, key: _MoteKey) -> float | None:
        per_node = self._costs.get(key)
        if not per_node:
            return None
        return sum(c.cpu_s for c in per_node.values()) / len(per_node)
