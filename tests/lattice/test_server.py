"""The embedded nats-server: port 0, JetStream with fsync always, clean stop, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from motes.config import LatticeConfig
from motes.errors import StartupError
from motes.lattice import NatsServer, ServerConfig
from motes.testing import nats_server
from motes.wire import resources
from motes.wire._nats import NatsBus


async def connect(url: str) -> NatsBus:
    return await NatsBus.connect(LatticeConfig(servers=(url,)))


async def test_two_servers_on_free_ports_with_jetstream(tmp_path: Path) -> None:
    async with nats_server(tmp_path / "a") as a, nats_server(tmp_path / "b") as b:
        assert a.port != b.port and a.port > 0
        assert a.url.startswith("nats://127.0.0.1:")
        conf = (tmp_path / "a" / "nats.conf").read_text()
        assert "sync_interval: always" in conf and '"127.0.0.1:-1"' in conf
        bus = await connect(a.url)
        try:
            kv = await bus.kv(resources.APPS)  # JetStream answers
            await kv.put("k", b"v")
            entry = await kv.get("k")
            assert entry is not None and entry.value == b"v"
        finally:
            await bus.close()
        assert any((tmp_path / "a" / "js").rglob("*.blk"))  # the store is under our directory
    assert a.proc.returncode is not None and b.proc.returncode is not None


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    config = ServerConfig(store_dir=tmp_path / "js")
    server = await NatsServer.start(config, workdir=tmp_path)
    bus = await connect(server.url)
    await (await bus.kv(resources.APPS)).put("k", b"kept")
    await bus.close()
    await server.stop()
    server = await NatsServer.start(config, workdir=tmp_path)
    try:
        bus = await connect(server.url)
        entry = await (await bus.kv(resources.APPS)).get("k")
        assert entry is not None and entry.value == b"kept"
        await bus.close()
    finally:
        await server.stop()


async def test_a_taken_port_is_a_clear_startup_error(tmp_path: Path) -> None:
    async with nats_server(tmp_path / "a") as a:
        with pytest.raises(StartupError, match="nats-server exited at start"):
            await NatsServer.start(
                ServerConfig(store_dir=tmp_path / "b" / "js", port=a.port), workdir=tmp_path / "b"
            )
