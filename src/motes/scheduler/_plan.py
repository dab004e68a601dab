"""The plan one placement pass builds, with the tallies the rules read kept as it grows.

``_reconcile`` rebuilds the whole layout after every event that matters, asking for each
instance "which node now?". Answering that by summing every node's instances for every
candidate costs O(nodes x instances) per instance placed; here each node's used resources,
instance count and per-mote counts are updated on every change instead, and every change
is logged, so a ``Ranking`` (the eligible nodes for one kind of mote, best first) re-judges
only the nodes whose plan changed since it last looked.

Decisions stay exactly those of judging every node afresh: resources are summed in the
same order (a removal re-sums its node rather than subtracting, so no rounding differs),
and rankings break ties by node id as a scan in id order does.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..wire.messages import InstanceSpec, MoteSpec
from .policy._types import amount

__all__ = ["Plan", "Ranking"]

RESOURCES = ("cpu", "memory_mb", "gpu")

MoteKey = tuple[str, str]
SpecOf = Callable[[str, str], MoteSpec | None]


class Plan:
    """Node id -> the instances it should run, and what placement reads of it."""

    def __init__(self, nodes: Iterable[str], spec_of: SpecOf) -> None:
        order = sorted(nodes)
        self.instances: dict[str, list[InstanceSpec]] = {nid: [] for nid in order}
        self.rank = {nid: i for i, nid in enumerate(order)}
        """Node id -> its place in id order (the tie-break between equal scores)."""
        self.version: dict[str, int] = dict.fromkeys(order, 0)
        self.log: list[tuple[str, bool]] = []
        """Every change, in order: the node, and whether it lost an instance (which can
        raise its scores; rankings catch up from this)."""
        self.rankings: dict[object, Ranking] = {}
        self.reads_most: dict[tuple[str, ...], int] = {}
        """Declared reads -> the most bytes of them any node holds (fixed for a pass)."""
        self._spec_of = spec_of
        self._used: dict[str, dict[str, float]] = {}
        self._same: Counter[tuple[str, str, str]] = Counter()
        self._where: dict[MoteKey, list[tuple[str, InstanceSpec]]] = defaultdict(list)

    def get(self, nid: str) -> list[InstanceSpec]:
        return self.instances.get(nid, [])

    def add(self, nid: str, inst: InstanceSpec) -> None:
        self.instances[nid].append(inst)
        self._where[(inst.app, inst.mote)].append((nid, inst))
        self._same[(nid, inst.app, inst.mote)] += 1
        self._claim(nid, inst)
        self._changed(nid, raised=False)

    def remove(self, nid: str, inst: InstanceSpec) -> None:
        self.instances[nid].remove(inst)
        self._where[(inst.app, inst.mote)].remove((nid, inst))
        self._same[(nid, inst.app, inst.mote)] -= 1
        self._used.pop(nid, None)
        for kept in self.instances[nid]:  # re-summed in order: no rounding differs
            self._claim(nid, kept)
        self._changed(nid, raised=True)

    def replace(self, nid: str, old: InstanceSpec, new: InstanceSpec) -> None:
        """The same instance with other fields (an actor's shards): nothing it uses changes."""
        insts = self.instances[nid]
        insts[insts.index(old)] = new
        where = self._where[(old.app, old.mote)]
        where[where.index((nid, old))] = (nid, new)

    def of(self, app: str, mote: str) -> list[tuple[str, InstanceSpec]]:
        """(node, instance) of every instance of the mote, any version (a fresh list)."""
        return list(self._where.get((app, mote), ()))

    def used(self, nid: str) -> dict[str, float]:
        """Resources claimed on the node: empty, or every resource (0.0 if unneeded)."""
        return dict(self._used.get(nid, {}))

    def same(self, nid: str, app: str, mote: str) -> int:
        return self._same[(nid, app, mote)]

    def count(self, nid: str) -> int:
        return len(self.instances.get(nid, ()))

    def _claim(self, nid: str, inst: InstanceSpec) -> None:
        spec = self._spec_of(inst.app, inst.mote)
        if spec is None:
            return
        used = self._used.setdefault(nid, dict.fromkeys(RESOURCES, 0.0))
        for res in RESOURCES:
            used[res] += amount(spec.needs, res) or 0.0

    def _changed(self, nid: str, *, raised: bool) -> None:
        self.version[nid] += 1
        self.log.append((nid, raised))


Entry = tuple[float, int, str, int]
"""(-score, rank, node, the node's plan version when judged): heap order is best first."""


@dataclass(slots=True)
class Ranking:
    """The eligible nodes for one kind of mote, best first, for the plan being built.

    ``score`` judges one node as for a mote that has no instance there yet (None: vetoed).
    An entry judged before its node changed is stale. With ``lazy`` (one more instance
    on a node never raises this kind's score there: ``policy.placing_can_raise``), a
    stale entry is an upper bound, so a node is judged again only when its stale entry
    reaches the top; otherwise, and after a node lost an instance, every changed node is
    judged again before the best is read.
    """

    score: Callable[[str], float | None]
    lazy: bool
    heap: list[Entry] = field(default_factory=list)
    judged: dict[str, int] = field(default_factory=dict)
    """Node -> the plan version its newest entry (or veto) was judged at."""
    seen: int = 0
    """How much of the plan's log has been taken into account."""

    @classmethod
    def build(cls, plan: Plan, score: Callable[[str], float | None], *, lazy: bool) -> Ranking:
        ranking = cls(score, lazy)
        for nid in plan.rank:
            ranking._judge(plan, nid)
        ranking.seen = len(plan.log)
        return ranking

    def best(self, plan: Plan, skip: set[str]) -> Entry | None:
        """The best current entry whose node is not in ``skip``."""
        for nid, raised in plan.log[self.seen :]:
            if (raised or not self.lazy) and self.judged[nid] != plan.version[nid]:
                self._judge(plan, nid)
        self.seen = len(plan.log)
        held: list[Entry] = []
        found: Entry | None = None
        while self.heap:
            top = self.heap[0]
            nid = top[2]
            if top[3] != plan.version[nid]:
                heapq.heappop(self.heap)
                if self.judged[nid] != plan.version[nid]:
                    self._judge(plan, nid)  # lazy: judged again only now it may be best
            elif nid in skip:
                held.append(heapq.heappop(self.heap))
            else:
                found = top
                break
        for entry in held:
            heapq.heappush(self.heap, entry)
        return found

    def _judge(self, plan: Plan, nid: str) -> None:
        self.judged[nid] = version = plan.version[nid]
        score = self.score(nid)
        if score is not None:
            heapq.heappush(self.heap, (-score, plan.rank[nid], nid, version))
