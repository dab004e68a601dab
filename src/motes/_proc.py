"""Child-process hygiene shared by everything that spawns: no orphans.

On Linux a child asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``),
so killing a mesh supervisor, or a node agent, takes its children with it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["die_with_parent", "run_main"]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    # Resolved once here: a preexec_fn runs between fork and exec, where looking the
    # library up (find_library runs ldconfig) is slow and not fork-safe.
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent() -> None:
    """``preexec_fn`` for subprocesses: deliver SIGTERM to the child if its parent exits."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_main(coro: Coroutine[Any, Any, T]) -> T:
    """Run a process's main coroutine on uvloop where it is installed, else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
