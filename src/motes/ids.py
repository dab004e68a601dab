"""Value types for the names that cross component boundaries.

Names of apps and motes become NATS subject tokens and KV keys, so they are restricted to
``[A-Za-z_][A-Za-z0-9_-]*``; ``MoteRef.parse`` checks that once, at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NewType

from .errors import RequestError

__all__ = ["AppDigest", "InstanceId", "MoteRef", "NodeId", "check_name"]

NodeId = NewType("NodeId", str)
"""A node's id: a fingerprint of its Ed25519 public key, e.g. ``n3k9x2p4q7w1a``."""
AppDigest = NewType("AppDigest", str)
"""An app version: ``sha256:`` and the hex digest of its bundle."""
InstanceId = NewType("InstanceId", str)
"""One placed instance of a mote, unique across the mesh's history."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it can be an app or mote name, else raise RequestError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RequestError(
            f"{kind} name {name!r} is not valid: use letters, digits, '_' or '-', "
            "starting with a letter or '_', at most 63 characters"
        )
    return name


@dataclass(frozen=True, slots=True)
class MoteRef:
    """``app.mote``: how users name a mote."""

    app: str
    mote: str

    @classmethod
    def parse(cls, text: str) -> MoteRef:
        app, sep, mote = text.partition(".") if isinstance(text, str) else ("", "", "")
        if not sep:
            raise RequestError(f"{text!r} is not APP.MOTE (for example 'wordcount.count')")
        return cls(check_name("app", app), check_name("mote", mote))

    def __str__(self) -> str:
        return f"{self.app}.{self.mote}"
