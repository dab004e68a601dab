"""Real hosts on one machine, for tests of a mesh across machines.

``Hosts(n)`` builds ``n`` hosts: each is a network namespace with loopback up, joined
to a bridge of its own by a veth pair, with the address ``10.77.<net>.<i>/24``. Nothing
is routed out: the hosts reach each other and nothing else, and the machine's own
interfaces and addresses are untouched. Processes started on a host (``spawn``) run
inside its namespace; ``cut(host)``/``mend(host)`` take its link down and up (a
partition: ``tc netem`` is not needed for that). Leaving the block (also after a failure)
stops every process started here, by pid, then deletes every namespace and link made
here. Needs root (``ip netns``); ``unavailable()`` says why not where it cannot run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import _proc

__all__ = ["Host", "Hosts", "unavailable"]

SUBNET = "10.77"


def unavailable() -> str | None:
    """Why hosts cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building hosts needs root (ip netns, veth, a bridge)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    return None


@dataclass(eq=False)
class Host:
    name: str
    """Its network namespace."""
    address: str
    veth: str
    """The bridge side of its veth pair (what ``cut`` takes down)."""
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def argv(self, args: list[str]) -> list[str]:
        """``args`` run inside this host."""
        return ["ip", "netns", "exec", self.name, *args]


class Hosts:
    def __init__(self, n: int, *, net: int | None = None) -> None:
        if not 1 <= n <= 200:
            raise ValueError("between 1 and 200 hosts")
        self.n = n
        self.tag = secrets.token_hex(3)
        self.net = net if net is not None else 1 + int(self.tag, 16) % 250
        self.bridge = f"mb{self.tag}"
        self.hosts: list[Host] = []
        self._made: list[tuple[str, str]] = []  # ("netns" | "link", name), in order

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __iter__(self) -> Any:
        return iter(self.hosts)

    async def __aenter__(self) -> Hosts:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        try:
            await self._ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            await self._ip("link", "set", self.bridge, "up")
            for i in range(1, self.n + 1):
                await self._add(i)
        except BaseException:
            await self._teardown()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._teardown()

    async def _add(self, i: int) -> None:
        ns, veth, inner = f"m{self.tag}h{i}", f"mv{self.tag}{i}", f"mi{self.tag}{i}"
        address = f"{SUBNET}.{self.net}.{i}"
        await self._ip("netns", "add", ns)
        self._made.append(("netns", ns))
        await self._ip("link", "add", veth, "type", "veth", "peer", "name", inner)
        self._made.append(("link", veth))
        await self._ip("link", "set", veth, "master", self.bridge)
        await self._ip("link", "set", veth, "up")
        await self._ip("link", "set", inner, "netns", ns)
        await self._ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
        await self._ip("-n", ns, "link", "set", inner, "up")
        await self._ip("-n", ns, "link", "set", "lo", "up")
        self.hosts.append(Host(ns, address, veth))

    async def spawn(
        self, host: Host, args: list[str], *, env: dict[str, str] | None = None, **kw: Any
    ) -> asyncio.subprocess.Process:
        """Start ``args`` inside ``host`` (stopped when the hosts are torn down)."""
        proc = await _proc.spawn(host.argv(args), env=env, new_session=True, **kw)
        host.procs.append(proc)
        return proc

    async def run(
        self,
        host: Host,
        args: list[str],
        *,
        timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside ``host`` to completion (a CLI command): its exit code and
        output. Killed (with its session) past ``timeout``."""
        proc = await _proc.spawn(
            host.argv(args),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            await _proc.stop(proc, 1.0)
            raise
        code = proc.returncode if proc.returncode is not None else -1
        return subprocess.CompletedProcess(args, code, out.decode(), err.decode())

    async def cut(self, host: Host) -> None:
        """Take ``host``'s link down: it reaches no other host until ``mend``."""
        await self._ip("link", "set", host.veth, "down")

    async def mend(self, host: Host, timeout: float = 10.0) -> None:
        """Bring ``host``'s link back, and wait until it carries traffic again."""
        await self._ip("link", "set", host.veth, "up")
        state = Path("/sys/class/net") / host.veth / "operstate"
        for _ in range(int(timeout / 0.02)):
            if state.read_text().strip() == "up":
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{host.name}'s link did not come back up within {timeout} s")

    async def _teardown(self) -> None:
        for host in self.hosts:
            for proc in host.procs:
                await _proc.stop(proc, 10.0)
        for kind, name in reversed(self._made):
            if kind == "netns":
                await self._ip("netns", "del", name, check=False)
            else:
                await self._ip("link", "del", name, check=False)
        self._made.clear()

    @staticmethod
    async def _ip(*args: str, check: bool = True) -> None:
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if check and proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {err.decode().strip()}")
