"""The embedded nats-server: port 0, JetStream with fsync always, clean stop, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from motes.errors import StartupError
from motes.lattice import NatsServer, ServerConfig
from motes.testing import nats_server
from motes.wire.bus import Lattice


async def test_two_servers_on_free_ports_with_jetstream(tmp_path: Path) -> None:
    async with nats_server(tmp_path / "a") as a, nats_server(tmp_path / "b") as b:
        assert a.port != b.port and a.port > 0
        assert a.url.startswith("nats://127.0.0.1:")
        conf = (tmp_path / "a" / "nats.conf").read_text()
        assert "sync_interval: always" in conf and '"127.0.0.1:-1"' in conf
        lattice = await Lattice.connect(a.url)
        try:
            account = await lattice.js.account_info()
            assert account is not None  # JetStream answers
            kv = await lattice.kv("motes_apps")
            await kv.put("k", b"v")
            assert (await kv.get("k")).value == b"v"
        finally:
            await lattice.close()
        assert any((tmp_path / "a" / "js").rglob("*.blk"))  # the store is under our directory
    assert a.proc.poll() is not None and b.proc.poll() is not None


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    config = ServerConfig(store_dir=tmp_path / "js")
    server = await NatsServer.start(config, workdir=tmp_path)
    lattice = await Lattice.connect(server.url)
    await (await lattice.kv("motes_apps")).put("k", b"kept")
    await lattice.close()
    await server.stop()
    server = await NatsServer.start(config, workdir=tmp_path)
    try:
        lattice = await Lattice.connect(server.url)
        assert (await (await lattice.kv("motes_apps")).get("k")).value == b"kept"
        await lattice.close()
    finally:
        await server.stop()


async def test_a_taken_port_is_a_clear_startup_error(tmp_path: Path) -> None:
    async with nats_server(tmp_path / "a") as a:
        with pytest.raises(StartupError, match="nats-server exited at start"):
            await NatsServer.start(
                ServerConfig(store_dir=tmp_path / "b" / "js", port=a.port), workdir=tmp_path / "b"
            )
