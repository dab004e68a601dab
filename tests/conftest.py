"""Shared fixtures: real nats-server and real node processes, one set per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from motes.client import Mesh
from motes.node.localmesh import LocalMesh
from motes.testing import FAST, local_mesh

APPS = Path(__file__).parent / "e2e" / "apps"


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep clients' store caches (``<motes home>/cache``) out of the user's home."""
    os.environ.setdefault("MOTES_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[LocalMesh]:
    async with local_mesh(tmp_path, nodes=3) as m:
        yield m


@pytest.fixture
async def client(mesh: LocalMesh) -> AsyncIterator[Mesh]:
    async with mesh.client(timing=FAST) as c:
        yield c


WASM_APP = APPS / "wasmapp.py"


@dataclass(frozen=True)
class WasmBuilt:
    """The test app with wasm motes, bundled, unpacked and compiled into ``cache``."""

    cache: Path
    bundle_dir: Path
    digest: str


@pytest.fixture(scope="session")
def wasm_built(tmp_path_factory: pytest.TempPathFactory) -> WasmBuilt:
    """Compiled once per machine and version of the guest, componentize-py and wasmtime
    (minutes on a busy two-core box), then only deserialized: the cache is keyed by
    content, like a pip cache, so later sessions reuse it."""
    pytest.importorskip("wasmtime", reason="the wasm extra is not installed (make sandbox)")
    pytest.importorskip("componentize_py", reason="the wasm extra is not installed")
    from motes.app.bundle import build_bundle, extract_bundle, load_app_file
    from motes.sandbox._wasmbuild import build

    cache = Path(os.environ.get("MOTES_TEST_WASM_CACHE", tempfile.gettempdir())) / "motes-wasm"
    bundle = build_bundle(load_app_file(WASM_APP))
    bundle_dir = extract_bundle(bundle.data, bundle.digest, tmp_path_factory.mktemp("wasm") / "b")
    build(bundle_dir, bundle.digest, cache)
    return WasmBuilt(cache, bundle_dir, bundle.digest)
