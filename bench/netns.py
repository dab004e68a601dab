"""Peers run in a network namespace of their own, with nothing but loopback.

``NamespacedDriver`` starts a peer driver script (``bench/drivers/``) with the peer's own
Python as ``unshare --net sh -c 'ip link set lo up && exec PYTHON DRIVER ARGS'``, so
whatever the peer binds or probes (Ray binds every interface and probes a public DNS
address; Dask's dashboard binds 0.0.0.0) stays inside a namespace that has only ``lo``.

The driver talks JSON lines over its stdin/stdout (``bench/drivers/_peer.py``). Its first
line names its network namespace; the harness then holds that namespace open (an fd on
``/proc/PID/ns/net``, so its identity cannot be reused) and answers ``go``. When the
driver has stopped, every process still in that namespace is a stray the peer left
behind: it is killed, and reported. Nothing outside that namespace is ever signalled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import peers

__all__ = ["NamespacedDriver", "PeerError", "members", "peer_env"]

NETNS_SH = 'ip link set lo up && exec "$0" "$@"'
DRIVERS = Path(__file__).resolve().parent / "drivers"

# Nothing from the harness's own environment that would point the peer at Motes' code.
_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


class PeerError(RuntimeError):
    """A peer driver failed; the message ends with the tail of its log."""


def peer_env(name: str) -> dict[str, str]:
    """The environment a peer runs in: its own HOME, no telemetry, no stray paths."""
    home = peers.home(name) / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(
        HOME=str(home),
        PYTHONDONTWRITEBYTECODE="1",
        RAY_USAGE_STATS_ENABLED="0",  # Ray: no usage reports (nothing could leave anyway)
        RAY_DISABLE_IMPORT_WARNING="1",
        DASK_DISTRIBUTED__DIAGNOSTICS__NVML="False",
    )
    env["PATH"] = os.pathsep.join([str(peers.python(name).parent), env.get("PATH", "")])
    return env


def own_netns() -> str:
    return os.readlink("/proc/self/ns/net")


def members(netns: str) -> list[int]:
    """Pids of the live processes in network namespace ``netns`` (e.g. ``net:[4026...]``)."""
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/net") == netns:
                out.append(int(entry.name))
        except OSError:  # gone, or a zombie
            continue
    return out


def _describe(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"{pid} (gone)"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"{pid} {text[:120]}"


class NamespacedDriver:
    """One driver process of one peer, in its own network namespace.

    ``await start()`` runs it up to its ``ready`` line (which it returns), ``ask()`` sends
    one request and returns its answer, ``stop()`` ends it and sweeps its namespace.
    """

    def __init__(self, peer: str, script: str, args: list[str], log_name: str) -> None:
        self.peer = peer
        self.script = script
        self.args = args
        self.log_path = peers.home(peer) / log_name
        self.proc: asyncio.subprocess.Process | None = None
        self.netns: str | None = None
        self._ns_fd: int | None = None
        self._lock = asyncio.Lock()
        self.strays: list[str] = []

    async def start(self, timeout: float = 120.0) -> dict[str, Any]:
        python = peers.python(self.peer)
        argv = [str(python), str(DRIVERS / self.script), *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                "unshare",
                "--net",
                "sh",
                "-c",
                NETNS_SH,
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=peer_env(self.peer),
                cwd=peers.home(self.peer),
                start_new_session=True,  # its own process group: stopped by us, in order
                limit=64 * 1024 * 1024,  # call_rtt answers carry every sample
            )
        hello = await self._read(timeout)
        netns = str(hello.get("hello", ""))
        if not netns.startswith("net:") or netns == own_netns():
            raise self._error(f"driver is not in a network namespace of its own ({hello})")
        # Hold the namespace: its identity stays ours until the sweep in stop().
        self._ns_fd = os.open(f"/proc/{self.proc.pid}/ns/net", os.O_RDONLY)
        if os.readlink(f"/proc/{self.proc.pid}/ns/net") != netns:
            raise self._error("driver changed namespace under us")
        self.netns = netns
        await self._write({"go": True})
        ready = await self._read(timeout)
        if "ready" not in ready:
            raise self._error(f"driver did not get ready ({ready})")
        return ready

    async def ask(self, request: dict[str, Any], timeout: float = 1800.0) -> Any:
        async with self._lock:
            await self._write(request)
            answer = await self._read(timeout)
        if "error" in answer:
            raise self._error(f"{request.get('op')} failed: {answer['error']}")
        return answer["ok"]

    async def result(self, timeout: float = 300.0) -> Any:
        """The one answer of a one-shot driver (which then exits by itself)."""
        answer = await self._read(timeout)
        if "error" in answer:
            raise self._error(f"failed: {answer['error']}")
        return answer["ok"]

    async def stop(self, grace: float = 60.0) -> list[str]:
        """End the driver (``quit``, then SIGTERM, then SIGKILL) and sweep its namespace.

        Returns the strays that had to be killed (an empty list when the peer cleaned up
        after itself, as it should).
        """
        proc = self.proc
        try:
            if proc is not None and proc.returncode is None:
                try:
                    await self._write({"op": "quit"})
                    assert proc.stdin is not None
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError, PeerError):
                    pass
                try:
                    async with asyncio.timeout(grace):
                        await proc.wait()
                except TimeoutError:
                    _killpg(proc.pid, signal.SIGTERM)
                    try:
                        async with asyncio.timeout(10):
                            await proc.wait()
                    except TimeoutError:
                        _killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
            if self.netns is not None:
                self.strays = await _sweep(self.netns)
        finally:
            if self._ns_fd is not None:
                os.close(self._ns_fd)
                self._ns_fd = None
        return self.strays

    async def _write(self, obj: dict[str, Any]) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise self._error("driver is not running")
        proc.stdin.write(json.dumps(obj).encode() + b"\n")
        await proc.stdin.drain()

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise self._error(f"no answer within {timeout:g} s") from None
        if not line:
            rc = await self.proc.wait()
            raise self._error(f"driver exited (code {rc})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _error(self, text: str) -> PeerError:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()[-15:]
        except OSError:
            lines = []
        tail = "\n    ".join(lines) or "(empty log)"
        return PeerError(f"{self.peer} {self.script}: {text}; {self.log_path}:\n    {tail}")


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


async def _sweep(netns: str, wait: float = 10.0) -> list[str]:
    """Give the namespace's processes ``wait`` s to exit, then kill what is left."""
    if netns == own_netns():  # never: start() refused such a driver
        return []
    deadline = time.monotonic() + wait
    left = members(netns)
    while left and time.monotonic() < deadline:  # nothing to wait on but /proc
        await asyncio.sleep(0.1)
        left = members(netns)
    strays = [_describe(pid) for pid in left]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if strays:
        print(
            f"  killed {len(strays)} stray peer process(es): {'; '.join(strays)}",
            file=sys.stderr,
            flush=True,
        )
    return strays
