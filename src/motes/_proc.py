"""Child processes, one way: spawn with a clean environment, stop in order, never orphan.

- ``spawn`` starts a child with an allow-listed environment (never the parent's whole
  one: secrets travel in 0600 config files, not in argv or env) and asks the kernel to
  SIGTERM it if its parent dies (``PR_SET_PDEATHSIG``, Linux).
- ``spawn(..., held=True)`` starts a child ahead of need: it imports what it runs, then
  waits (``wait_until_released``) until its starter has written its settings and
  ``release`` lets it go on, so interpreter starts overlap whatever the starter does meanwhile.
- ``stop`` is terminate, wait, kill.
- ``process_main`` runs a process's main coroutine on uvloop where it is installed;
  the first SIGTERM or SIGINT asks it to drain, a second one exits at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import importlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = [
    "ENV_ALLOWED",
    "child_env",
    "die_with_parent",
    "process_main",
    "python",
    "release",
    "run_main",
    "serve_until_drained",
    "spawn",
    "stop",
    "wait_until_released",
]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1

ENV_ALLOWED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "TZ",
        "TMPDIR",
        "HOME",
        "USER",
        "LOGNAME",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "SYSTEMROOT",
    }
)
"""Variables a child inherits from its parent; everything else it is given explicitly."""

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    # Resolved once here: a preexec_fn runs between fork and exec, where looking the
    # library up (find_library runs ldconfig) is slow and not fork-safe.
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent() -> None:
    """``preexec_fn`` for subprocesses: deliver SIGTERM to the child if its parent exits."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child gets: the allow-listed names that are set, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWED}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


async def spawn(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    cwd: Path | None = None,
    new_session: bool = False,
    detached: bool = False,
    held: bool = False,
) -> asyncio.subprocess.Process:
    """Start ``args`` with ``child_env(env)``; it dies with us (PDEATHSIG) unless
    ``detached`` (a daemon that outlives the command that started it).

    ``new_session``: a terminal's Ctrl-C then reaches only us, and we stop it in order.
    ``held``: its stdin is a pipe on which ``release`` tells it to go on.
    """
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if held else asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=child_env(env),
        preexec_fn=None if detached else die_with_parent,
        start_new_session=new_session or detached,
    )


async def release(proc: asyncio.subprocess.Process) -> None:
    """Let a child started with ``held=True`` go on (its settings are written)."""
    assert proc.stdin is not None, "release is for a child spawned with held=True"
    proc.stdin.write(b"go\n")
    try:
        await proc.stdin.drain()
    except ConnectionError:
        pass  # it exited meanwhile: whoever waits on it sees its exit code
    proc.stdin.close()


def wait_until_released(preload: tuple[str, ...] = ()) -> None:
    """In a child spawned with ``held=True``: import ``preload`` (modules it would
    otherwise import lazily once running), then block until its starter lets it go on
    (``release``); exit if the starter went away first (its stdin closed without a word)."""
    for module in preload:
        importlib.import_module(module)
    if not sys.stdin.readline():
        sys.exit("motes: the process that started this one went away before releasing it")


def python(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


async def stop(proc: asyncio.subprocess.Process, grace: float = 10.0) -> int:
    """SIGTERM, wait up to ``grace``, then SIGKILL; returns the exit code."""
    if proc.returncode is not None:
        return proc.returncode
    _signal(proc, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            return await proc.wait()
    except TimeoutError:
        _signal(proc, signal.SIGKILL)
        return await proc.wait()


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass  # it exited meanwhile: what we wanted


def run_main(coro: Coroutine[Any, Any, T]) -> T:
    """Run a process's main coroutine on uvloop where it is installed, else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def process_main(main: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(draining)``: the first SIGTERM/SIGINT sets ``draining`` (stop taking
    work, finish what is held, exit); a second one exits at once."""

    async def run() -> T:
        loop = asyncio.get_running_loop()
        draining = asyncio.Event()

        def on_signal() -> None:
            if draining.is_set():
                os._exit(1)
            draining.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        return await main(draining)

    return run_main(run())


async def serve_until_drained(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], draining: asyncio.Event
) -> None:
    """Run a service ``run(started)`` in a process its starter waits on: print ``ready``
    once it has started (the line the starter reads), stop it when ``draining`` is set.
    A service that fails before it started raises here, so the process exits saying why."""
    started = asyncio.Event()
    task = asyncio.ensure_future(run(started))
    ready = asyncio.ensure_future(started.wait())
    drained = asyncio.ensure_future(draining.wait())
    try:
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            print("ready", flush=True)
            await asyncio.wait({drained, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (ready, drained, task):
            t.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
