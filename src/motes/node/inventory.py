"""What a node can offer, detected at start (cpus, memory, arch, os, gpus, screen, camera),
and its power source, read again with every heartbeat."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

from ..wire.messages import Inventory, Power

__all__ = ["detect_inventory", "parse_labels", "read_power"]


def _memory_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return 0


def _gpus() -> list[str]:
    """NVIDIA gpus by name, via nvidia-smi; none when it is absent or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _screen() -> bool:
    """A display this user's programs can open: X11 or Wayland."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True
    return platform.system() == "Darwin" or platform.system() == "Windows"


def _camera() -> bool:
    return bool(glob.glob("/dev/video[0-9]*"))


def detect_inventory() -> Inventory:
    gpus = _gpus()
    return Inventory(
        cpus=os.cpu_count() or 1,
        memory_mb=_memory_mb(),
        arch=platform.machine().lower(),
        os=platform.system().lower(),
        gpus=len(gpus),
        gpu_names=gpus,
        screen=_screen(),
        camera=_camera(),
    )


def read_power(root: Path = Path("/sys/class/power_supply")) -> Power:
    """On battery when a battery reports Discharging and no mains supply is online."""
    batteries: list[tuple[str, float | None]] = []
    mains_online = False
    try:
        supplies = sorted(root.iterdir())
    except OSError:
        return Power()
    for supply in supplies:
        kind = _read(supply / "type")
        if kind == "Battery":
            pct = _read(supply / "capacity")
            batteries.append(
                (_read(supply / "status") or "", float(pct) if pct and pct.isdigit() else None)
            )
        elif kind == "Mains" and _read(supply / "online") == "1":
            mains_online = True
    if not batteries:
        return Power()
    status, level = batteries[0]
    return Power(on_battery=status == "Discharging" and not mains_online, battery_pct=level)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_labels(items: list[str]) -> dict[str, str]:
    """``["role=worker", "zone=home"]`` -> ``{"role": "worker", "zone": "home"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out
