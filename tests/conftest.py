"""Shared fixtures: real nats-server and real node processes, one set per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from motes.client import Mesh
from motes.node.localmesh import LocalMesh
from motes.testing import FAST, local_mesh

APPS = Path(__file__).parent / "e2e" / "apps"


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep clients' store caches (``<motes home>/cache``) out of the user's home."""
    import os

    os.environ.setdefault("MOTES_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[LocalMesh]:
    async with local_mesh(tmp_path, nodes=3) as m:
        yield m


@pytest.fixture
async def client(mesh: LocalMesh) -> AsyncIterator[Mesh]:
    async with mesh.client(timing=FAST) as c:
        yield c
