"""The package's seams hold: only the Bus implementation talks to nats-py, and imports
point down the layers."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "motes"
ALLOWED = ("wire", "lattice")
"""Where nats-py may be named: the Bus implementation, and starting the server."""

_NATS_ERRORS = re.compile(
    r"\b(NoRespondersError|KeyWrongLastSequenceError|KeyNotFoundError|KeyDeletedError|"
    r"BucketNotFoundError|ConnectionClosedError|OutboundBufferLimitError|NoKeysError|"
    r"ObjectNotFoundError)\b|nats\.(errors|js)\b"
)


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _outside(path: Path) -> bool:
    return path.relative_to(SRC).parts[0] not in ALLOWED


def test_only_the_bus_implementation_imports_nats() -> None:
    imports = re.compile(r"^\s*(import nats\b|from nats\b)", re.M)
    leaks = [
        str(p.relative_to(SRC))
        for p in filter(_outside, _modules())
        if imports.search(p.read_text())
    ]
    assert not leaks, leaks


def test_no_nats_exception_is_named_outside_the_bus() -> None:
    found = [
        f"{path.relative_to(SRC)}:{i}: {line.strip()}"
        for path in filter(_outside, _modules())
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if _NATS_ERRORS.search(line)
    ]
    assert not found, found


def test_within_wire_only_the_nats_modules_import_nats() -> None:
    users = sorted(
        p.name
        for p in (SRC / "wire").glob("*.py")
        if re.search(r"^\s*(import nats|from nats)", p.read_text(), re.M)
    )
    assert users == ["_nats.py", "_nats_errors.py", "_nats_js.py"]
