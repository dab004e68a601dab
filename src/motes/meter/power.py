"""How many joules a call cost: RAPL where it is readable, else a power model of the node.

A ``PowerModel`` is idle and full-load watts per core. It comes, in this order, from the
node's own numbers (``PowerModel.configured``), from a table of known CPUs and Raspberry
Pi models (matched on ``/proc/cpuinfo``'s model name or the device tree's model), or
from a generic default. A call's energy under the model is its CPU seconds times the
full-load watts of one core: its dynamic energy plus its share of the idle power of the
core it held (the attributional rule of the Cloud Carbon Footprint method).

``Rapl`` reads the package domains of ``/sys/class/powercap/intel-rapl:*`` (AMD Zen
exposes the same files) when they are readable, which on Linux >= 5.10 means root. Only
top-level package domains are summed: core, uncore and dram are inside them, and psys
contains them, so adding those would count the same joules twice. Its counters are
machine-wide; the node apportions an interval's joules by CPU share.

Every estimate names its method and a relative error band. The bands are our judgement
from published comparisons (see ``docs/guide.md``), not measurements of this machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RequestError

__all__ = ["KNOWN", "Energy", "PowerModel", "Rapl", "detect_model"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Energy:
    """Estimated joules, how they were estimated, and +/- ``band`` (relative)."""

    joules: float
    method: str
    band: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerModel:
    """Watts per core at idle and at full load."""

    name: str
    idle_w: float
    max_w: float
    band: float
    """Relative error of estimates made with this model (0.5: +/- 50 %)."""
    source: str = "table"
    """``table``, ``config`` or ``default``."""

    def __post_init__(self) -> None:
        if not (0 <= self.idle_w <= self.max_w) or self.max_w <= 0:
            raise RequestError(
                f"power model {self.name!r}: need 0 <= idle_w ({self.idle_w}) <= max_w "
                f"({self.max_w}) and max_w > 0 (watts per core)"
            )

    @property
    def method(self) -> str:
        return f"model:{self.source}:{self.name}"

    def energy(self, cpu_s: float) -> Energy:
        """The joules of ``cpu_s`` CPU seconds."""
        return Energy(joules=cpu_s * self.max_w, method=self.method, band=self.band)

    def watts(self, cores_busy: float, cores: int) -> float:
        """The node's draw with ``cores_busy`` of its ``cores`` busy."""
        busy = min(max(cores_busy, 0.0), float(cores))
        return cores * self.idle_w + busy * (self.max_w - self.idle_w)

    @classmethod
    def configured(cls, idle_w: float, max_w: float) -> PowerModel:
        """The node owner's own numbers (node config ``power_idle_w``/``power_max_w``)."""
        return cls(name="owner", idle_w=idle_w, max_w=max_w, band=0.3, source="config")


def _pi(name: str, a: float, b: float, cores: int) -> PowerModel:
    """A Raspberry Pi's whole-board linear model ``P = a*u + b`` (PowerJoular), per core."""
    return PowerModel(name=name, idle_w=b / cores, max_w=(a + b) / cores, band=0.25)


KNOWN: tuple[tuple[re.Pattern[str], PowerModel], ...] = (
    # Raspberry Pi boards, from the device tree's model string (PowerJoular's formulas).
    (re.compile(r"Raspberry Pi 5"), _pi("Raspberry Pi 5", 3.46, 4.40, 4)),
    (re.compile(r"Raspberry Pi 400"), _pi("Raspberry Pi 400", 5.03, 1.82, 4)),
    (re.compile(r"Raspberry Pi 4"), _pi("Raspberry Pi 4 Model B", 4.53, 2.29, 4)),
    (re.compile(r"Raspberry Pi 3 Model B Plus"), _pi("Raspberry Pi 3 Model B+", 3.30, 2.00, 4)),
    (re.compile(r"Raspberry Pi 3"), _pi("Raspberry Pi 3 Model B", 3.48, 1.08, 4)),
    (re.compile(r"Raspberry Pi 2"), _pi("Raspberry Pi 2 Model B", 1.15, 1.29, 4)),
    (re.compile(r"Raspberry Pi Zero W"), _pi("Raspberry Pi Zero W", 0.47, 0.92, 1)),
    # Server and cloud CPUs: Cloud Carbon Footprint's per-vCPU averages (AWS, GCP).
    (re.compile(r"AMD EPYC"), PowerModel(name="AMD EPYC vCPU", idle_w=0.74, max_w=3.5, band=0.5)),
    (
        re.compile(r"Xeon"),
        PowerModel(name="Intel Xeon vCPU", idle_w=0.71, max_w=4.26, band=0.5),
    ),
)

DEFAULT_TDP_W = 85.0
"""CodeCarbon's default TDP when the CPU is unknown."""


def _default(cores: int) -> PowerModel:
    """Unknown CPU: the Teads curve's idle (0.12) and full (1.02) fractions of a default TDP."""
    per = DEFAULT_TDP_W / max(cores, 1)
    return PowerModel(
        name="unknown cpu", idle_w=0.12 * per, max_w=1.02 * per, band=0.7, source="default"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").replace("\x00", " ")
    except OSError:
        return ""


def cpu_names(root: Path = Path("/")) -> list[str]:
    """What this machine calls its CPU: the device tree's model, then cpuinfo's model name."""
    names = [_read(root / "proc/device-tree/model").strip()]
    for line in _read(root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            names.append(value.strip())
    return [n for n in names if n]


def detect_model(
    *, idle_w: float = 0.0, max_w: float = 0.0, root: Path = Path("/"), cores: int = 0
) -> PowerModel:
    """This node's power model: the owner's numbers if given, else the table, else a default."""
    if idle_w or max_w:
        return PowerModel.configured(idle_w, max_w)
    for name in cpu_names(root):
        for pattern, model in KNOWN:
            if pattern.search(name):
                return model
    return _default(cores or os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class _Domain:
    energy: Path
    range_uj: int


class Rapl:
    """The machine's package energy counters, if readable; ``Rapl.detect()`` is None if not."""

    METHOD = "rapl"
    BAND = 0.15

    def __init__(self, domains: list[_Domain]) -> None:
        self._domains = domains
        self._last = [self._read(d) for d in domains]

    @classmethod
    def detect(cls, root: Path = Path("/sys/class/powercap")) -> Rapl | None:
        domains = []
        for d in sorted(root.glob("intel-rapl:*")):
            if d.name.count(":") != 1:  # intel-rapl:0:0 is a subdomain of intel-rapl:0
                continue
            if not _read(d / "name").startswith("package"):
                continue  # psys contains the packages
            energy = d / "energy_uj"
            try:
                int(energy.read_text())
                range_uj = int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue  # not readable (root-only since Linux 5.10)
            domains.append(_Domain(energy, range_uj))
        return cls(domains) if domains else None

    @staticmethod
    def _read(d: _Domain) -> int:
        return int(d.energy.read_text())

    def take_joules(self) -> float:
        """Joules used by the whole machine since the last call (or since detection)."""
        total = 0
        for i, d in enumerate(self._domains):
            now = self._read(d)
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped
                delta += d.range_uj + 1
            total += delta
            self._last[i] = now
        return total / 1e6
