"""Two real hosts: a mesh started with ``motes up --listen`` on one, a person joining by
invite from the other and calling a mote across the link, over TLS the mesh key vouches
for. Off loopback nothing connects in plaintext, without a credential, or without
checking the server's certificate against the mesh's own CA."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from motes.testing import eventually
from motes.testing.hosts import Host, Hosts, unavailable

from ..conftest import APPS

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")

ENV = {"MOTES_HEARTBEAT_S": "0.2", "MOTES_LEASE_TTL_S": "1.0"}

# Each way in, tried from the other host: ``ok`` or the exception's name and text.
PROBE = """
import asyncio, json, ssl, sys
import nats

url, creds, ca = sys.argv[1], sys.argv[2], sys.argv[3]

async def attempt(server, **kw):
    async def quiet(exc):
        pass
    try:
        nc = await nats.connect(server, allow_reconnect=False, connect_timeout=3,
                                max_reconnect_attempts=0, error_cb=quiet, **kw)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await nc.close()
    return "ok"

async def main():
    mesh_ca = ssl.create_default_context(cafile=ca)
    public_cas = ssl.create_default_context()
    plain = url.replace("tls://", "nats://")
    out = {
        "plaintext": await attempt(plain, user_credentials=creds),
        "no credential": await attempt(url, tls=mesh_ca),
        "public CAs only": await attempt(url, tls=public_cas, user_credentials=creds),
        "mesh CA and credential": await attempt(url, tls=mesh_ca, user_credentials=creds),
    }
    print(json.dumps(out))

asyncio.run(main())
"""


def motes(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "motes.cli", "--home", str(home), *args]


async def cli(hosts: Hosts, host: Host, home: Path, *args: str) -> str:
    env = {**os.environ, **ENV}
    done = await hosts.run(host, motes(home, *args), env=env, timeout=90)
    assert done.returncode == 0, f"motes {' '.join(args)} on {host.name}:\n{done.stderr}"
    return done.stdout


async def test_a_person_on_another_host_joins_by_invite_and_calls_over_tls(
    tmp_path: Path,
) -> None:
    async with Hosts(2) as hosts:
        hub, laptop = hosts
        home, ada = tmp_path / "hub", tmp_path / "ada"
        up = await hosts.spawn(
            hub,
            motes(home, "up", "--nodes", "1", "--listen", hub.address),
            env={**os.environ, **ENV},
            stdout=-1,
            stderr=-2,
        )
        assert up.stdout is not None
        seen = []
        async for line in up.stdout:
            seen.append(line.decode())
            if b"Ctrl-C stops the mesh" in line:
                break
        else:
            raise AssertionError("motes up --listen did not start:\n" + "".join(seen))
        assert f"tls://{hub.address}:4222" in "".join(seen)

        await cli(hosts, hub, home, "deploy", str(APPS / "second.py"))
        token = await cli(hosts, hub, home, "invite", "--person", "ada", "--grant", "call:second")
        await cli(hosts, laptop, ada, "join", token.splitlines()[0].strip())
        answer = await cli(hosts, laptop, ada, "call", "second.hello", '"ada"')
        assert json.loads(answer) == "hello ada"

        # The joiner keeps the mesh CA it checked against the mesh key in the invite.
        info = json.loads((ada / "membership.json").read_text())
        assert info["servers"] == [f"tls://{hub.address}:4222"]
        creds = ada / "run" / "ada.creds"
        await cli(hosts, laptop, ada, "creds", "--output", str(creds))
        probe = await hosts.run(
            laptop,
            [sys.executable, "-c", PROBE, info["servers"][0], str(creds), info["ca"]],
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        tried = json.loads(probe.stdout)
        assert tried["mesh CA and credential"] == "ok", tried
        assert tried["plaintext"] != "ok", tried
        assert "authorization" in tried["no credential"].lower(), tried
        assert "CERTIFICATE_VERIFY_FAILED" in tried["public CAs only"], tried


async def _started(proc: asyncio.subprocess.Process, marker: bytes, what: str) -> str:
    assert proc.stdout is not None
    seen = []
    async with asyncio.timeout(60):
        async for line in proc.stdout:
            seen.append(line.decode())
            if marker in line:
                return "".join(seen)
    raise AssertionError(f"{what} did not start:\n" + "".join(seen))


async def test_a_machine_joins_as_a_leaf_and_serves_the_motes_placed_on_it(
    tmp_path: Path,
) -> None:
    async with Hosts(2) as hosts:
        hub, box = hosts
        home, box_home = tmp_path / "hub", tmp_path / "box"
        env = {**os.environ, **ENV}
        up = await hosts.spawn(
            hub, motes(home, "up", "--nodes", "1", "--listen", hub.address), env=env, stdout=-1
        )
        await _started(up, b"Ctrl-C stops the mesh", "motes up --listen")
        token = (await cli(hosts, hub, home, "invite", "--node", "box")).splitlines()[0]
        joined = await hosts.spawn(
            box,
            motes(box_home, "join", token.strip(), "--label", "where=box"),
            env=env,
            stdout=-1,
        )
        out = await _started(joined, b"machine up: leaf server nats://127.0.0.1:", "the leaf")
        assert "joined mesh" in out

        async def leaf_ready() -> dict[str, Any] | None:
            nodes = json.loads(await cli(hosts, hub, home, "nodes", "--json"))
            found = [n for n in nodes if n["name"] == "box" and n["state"] == "ready"]
            return found[0] if found else None

        leaf = await eventually(leaf_ready, timeout=60, what="the leaf machine's node, ready")
        await cli(hosts, hub, home, "deploy", str(APPS / "machines.py"))
        assert json.loads(await cli(hosts, hub, home, "call", "machines.double", "21")) == 42
        assert leaf["role"] == "leaf" and leaf["link"].startswith(f"tls://{hub.address}:")
        ps = json.loads(await cli(hosts, hub, home, "ps", "--json"))
        assert {p["node"] for p in ps if p["app"] == "machines"} == {leaf["id"]}
