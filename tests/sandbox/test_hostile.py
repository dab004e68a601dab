"""The hostile-guest suite for native programs: each attack ends in a typed error that
names the limit (or finds nothing to take), within the bound the test states; the host's
files are untouched, and the next run works. Run under bubblewrap and under Landlock."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from motes.errors import SandboxDenied, SandboxLimit, SandboxUnavailable
from motes.sandbox import _landlock
from motes.sandbox._cgroup import Cgroup
from motes.sandbox.confine import _bwrap_probe, run_confined
from motes.wire.messages import Confinement

PY = "/usr/bin/python3"


def _backends() -> list[object]:
    why = _bwrap_probe()
    lock = _landlock.abi()
    return [
        pytest.param("bwrap", marks=pytest.mark.skipif(bool(why), reason=why or "-")),
        pytest.param(
            "landlock",
            marks=pytest.mark.skipif(lock < 4, reason=f"Landlock ABI {lock} < 4 (no TCP rules)"),
        ),
    ]


def _cgroups() -> bool:
    group = Cgroup.make(8, 64)
    if group is None:
        return False
    group.remove()
    return group.enforces == {"processes", "memory"}


needs_cgroup = pytest.mark.skipif(
    not _cgroups(), reason="no writable pids+memory cgroup here (limits by rlimit only)"
)

pytestmark = [
    pytest.mark.skipif(not os.path.exists(PY), reason=f"{PY} (the guest) is missing"),
    pytest.mark.parametrize("backend", _backends()),
]


async def _run(backend: str, code: str, **limits: object) -> object:
    confine = Confinement(**{"timeout_s": 10.0, "memory_mb": 128, "procs": 32, **limits})
    return await run_confined([PY, "-I", "-c", code], confine, prefer=backend)  # type: ignore[arg-type]


async def _serves_next(backend: str) -> None:
    done = await _run(backend, "print(6 * 7)")
    assert done.returncode == 0 and done.stdout == b"42\n"


async def test_ordinary_program_runs_with_its_output(backend: str) -> None:
    done = await _run(backend, "import sys; print('out'); print('err', file=sys.stderr)")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"out\n", b"err\n")
    assert done.backend == backend


async def test_infinite_loop_is_killed_at_the_deadline(backend: str) -> None:
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await _run(backend, "while True: pass", timeout_s=1.0)
    assert time.monotonic() - t < 3.0
    assert err.value.limit == "deadline" and err.value.used >= 1.0 and err.value.allowed == 1.0
    await _serves_next(backend)


@needs_cgroup
async def test_memory_bomb_is_stopped_by_the_memory_limit(backend: str) -> None:
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await _run(backend, "x = bytearray(1 << 30)", memory_mb=64)
    assert time.monotonic() - t < 5.0
    assert err.value.limit == "memory" and err.value.allowed == 64 and err.value.used > 0
    await _serves_next(backend)


@needs_cgroup
async def test_fork_bomb_is_stopped_by_the_processes_limit(backend: str) -> None:
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await _run(backend, "import os\nwhile True: os.fork()", procs=16)
    assert time.monotonic() - t < 5.0
    assert err.value.limit == "processes" and err.value.allowed == 16
    await _serves_next(backend)


async def test_a_gigabyte_of_output_is_cut_at_the_output_limit(backend: str) -> None:
    t = time.monotonic()
    code = "import sys\nb = b'x' * (1 << 20)\nfor _ in range(1024): sys.stdout.buffer.write(b)"
    with pytest.raises(SandboxLimit) as err:
        await _run(backend, code, output_bytes=1 << 20)
    assert time.monotonic() - t < 5.0
    assert err.value.limit == "output" and err.value.used > err.value.allowed == 1 << 20
    await _serves_next(backend)


async def test_a_gigabyte_file_is_cut_at_the_file_size_limit(backend: str, tmp_path: Path) -> None:
    # A shell, not Python: CPython ignores SIGXFSZ (its writes fail with EFBIG instead,
    # which the guest sees as its own OSError).
    out = tmp_path / "out"
    out.mkdir()
    guest = "/w" if backend == "bwrap" else str(out)
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await run_confined(
            ["sh", "-c", f"head -c 1073741824 /dev/zero > {guest}/big"],
            Confinement(writable={guest: str(out)}, file_mb=4),
            prefer=backend,  # type: ignore[arg-type]
        )
    assert time.monotonic() - t < 5.0
    assert err.value.limit == "file size" and err.value.allowed == 4
    assert (out / "big").stat().st_size <= 4 << 20
    await _serves_next(backend)


async def test_reads_outside_the_view_find_nothing(backend: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    key = home / "keys" / "node.seed"
    key.write_text("SECRET-SEED")
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.txt").write_text("visible")
    (data / "link").symlink_to(key)
    os.environ["MOTES_TEST_SECRET"] = "SECRET-ENV"
    guest = "/data" if backend == "bwrap" else str(data)
    code = f"""
import os
for p in [{str(key)!r}, {guest!r} + '/../home/keys/node.seed', {guest!r} + '/link',
          '/etc/hostname', '/root', {str(tmp_path)!r}]:
    try:
        print(p, open(p).read() if not os.path.isdir(p) else os.listdir(p))
    except OSError as e:
        print(p, 'DENIED', type(e).__name__)
try:
    print('env', open('/proc/self/environ').read())
except OSError as e:
    print('env DENIED', type(e).__name__)
print('mine', open({guest!r} + '/ok.txt').read())
"""
    try:
        done = await run_confined(
            [PY, "-I", "-c", code],
            Confinement(files={guest: str(data)}),
            prefer=backend,  # type: ignore[arg-type]
            hidden=[str(home)],
        )
    finally:
        del os.environ["MOTES_TEST_SECRET"]
    text = done.stdout.decode()
    assert "SECRET" not in text, text
    assert text.count("DENIED") >= 5, text
    assert "mine visible" in text
    assert key.read_text() == "SECRET-SEED"


async def test_declaring_the_nodes_own_files_is_refused(backend: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    sneaky = tmp_path / "sneaky"
    sneaky.symlink_to(home / "keys")
    for files in ({"/k": str(home / "keys")}, {"/k": str(sneaky)}, {"/x": str(tmp_path)}):
        with pytest.raises(SandboxDenied, match="node's own files"):
            await run_confined(
                ["true"],
                Confinement(files=files),
                prefer=backend,
                hidden=[str(home)],  # type: ignore[arg-type]
            )
    for guest in ("rel", "/a/../etc", "/usr/x", "/proc"):
        with pytest.raises(SandboxDenied):
            await run_confined(["true"], Confinement(files={guest: str(tmp_path)}), prefer=backend)  # type: ignore[arg-type]


async def test_no_network_unless_granted(backend: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')
except OSError as e:
    print('DENIED', type(e).__name__)
"""
    try:
        denied = await _run(backend, code)
        assert denied.stdout.startswith(b"DENIED"), denied.stdout  # type: ignore[attr-defined]
        if backend == "bwrap":  # net=True shares the host's network namespace
            granted = await _run(backend, code, net=True)
            assert granted.stdout.startswith(b"CONNECTED"), granted.stdout  # type: ignore[attr-defined]
    finally:
        listener.close()


async def test_host_files_are_read_only_inside(backend: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("original")
    guest = "/data" if backend == "bwrap" else str(data)
    code = f"open({guest!r} + '/f', 'w').write('changed')"
    done = await run_confined(
        [PY, "-I", "-c", code],
        Confinement(files={guest: str(data)}),
        prefer=backend,  # type: ignore[arg-type]
    )
    assert done.returncode != 0
    assert (data / "f").read_text() == "original"


def test_unknown_backend_is_refused_not_run_unconfined(backend: str) -> None:
    del backend
    with pytest.raises(SandboxUnavailable):
        from motes.sandbox.confine import backend as choose

        choose("none")  # type: ignore[arg-type]


async def test_a_bomb_leaves_a_neighbour_run_alone(backend: str) -> None:
    import asyncio

    bomb = _run(backend, "import os\nwhile True: os.fork()", procs=16, timeout_s=3.0)
    neighbour = _run(backend, "import time; time.sleep(0.3); print(6 * 7)")
    hit, done = await asyncio.gather(bomb, neighbour, return_exceptions=True)
    assert isinstance(hit, SandboxLimit), hit
    assert done.stdout == b"42\n", done  # type: ignore[union-attr]


def test_without_bubblewrap_it_falls_back_or_refuses(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from motes.sandbox import confine

    monkeypatch.setenv("PATH", "/nonexistent")
    confine._bwrap_probe.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap is not installed"):
            confine.backend("bwrap")
        if _landlock.abi() >= 4:
            assert confine.backend("auto") == "landlock"
    finally:
        monkeypatch.undo()
        confine._bwrap_probe.cache_clear()
    del backend
