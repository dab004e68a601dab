"""The hosts harness: namespaces that reach each other over a bridge, a link that can
be cut and mended, and nothing left behind afterwards, also after a failure."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from motes.testing.hosts import Hosts, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")

PROBE = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n"
    "except OSError as exc:\n"
    "    sys.exit(f'refused: {exc}')\n"
)
SERVE = (
    "import socket, sys\n"
    "s = socket.socket(); s.bind((sys.argv[1], 9911)); s.listen()\n"
    "print('listening', flush=True)\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)


async def _ip(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE)
    return (await proc.communicate())[0].decode()


async def _namespaces() -> set[str]:
    return {line.split()[0] for line in (await _ip("netns", "list")).splitlines() if line}


async def test_hosts_reach_each_other_a_cut_link_partitions_and_nothing_is_left() -> None:
    before = await _namespaces()
    with pytest.raises(RuntimeError, match="on purpose"):
        async with Hosts(3) as hosts:
            a, b, c = hosts
            assert {a.address, b.address, c.address} == {
                f"10.77.{hosts.net}.{i}" for i in (1, 2, 3)
            }
            server = await hosts.spawn(
                a, [sys.executable, "-c", SERVE, a.address], stdout=subprocess.PIPE
            )
            assert server.stdout is not None
            assert (await server.stdout.readline()).strip() == b"listening"

            async def probe() -> int:
                cmd = [sys.executable, "-c", PROBE, a.address, "9911"]
                return (await hosts.run(b, cmd, timeout=30)).returncode

            assert await probe() == 0
            await hosts.cut(b)
            assert await probe() != 0
            await hosts.mend(b)
            # The bridge may take a moment to forward to a port that came back.
            assert any([await probe() == 0 for _ in range(3)])
            # The machine's own network is not theirs: no host reaches this namespace.
            assert (await hosts.run(c, ["ip", "-br", "addr"])).stdout.count("10.77.") == 1
            raise RuntimeError("a test failing on purpose")
    assert server.returncode is not None
    assert await _namespaces() == before
    links = await _ip("-br", "link")
    assert hosts.bridge not in links and hosts.tag not in links
