"""What a node can offer, detected once at start: cpus, memory, arch, os, gpus."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from ..wire.messages import Inventory

__all__ = ["detect_inventory", "parse_labels"]


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


def detect_inventory() -> Inventory:
    gpus = _gpus()
    return Inventory(
        cpus=os.cpu_count() or 1,
        memory_mb=_memory_mb(),
        arch=platform.machine().lower(),
        os=platform.system().lower(),
        gpus=len(gpus),
        gpu_names=gpus,
    )


def parse_labels(items: list[str]) -> dict[str, str]:
    """``["role=worker", "zone=home"]`` -> ``{"role": "worker", "zone": "home"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out
