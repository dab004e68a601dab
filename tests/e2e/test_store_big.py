"""A 1 GiB file in and out through the CLI, in bounded memory, on a 10-node mesh."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import blake3
import pytest

from motes.testing import local_mesh

GIB = 1 << 30
MEMORY_BOUND_MIB = 300
"""Peak RSS allowed for the client process: a fraction of the file, whatever its size."""

# Runs the CLI in a process that reports its own peak RSS (VmHWM) when done.
_MEASURED = """
import sys
from motes.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("PEAK_KB", int(peak.split()[1]), file=sys.stderr)
sys.exit(code)
"""


def write_big_file(path: Path, size: int) -> str:
    """Pseudo-random bytes (no two chunks alike, so nothing dedups); return their hash."""
    stream = blake3.blake3(b"motes big file")
    digest = blake3.blake3()
    with open(path, "wb") as f:
        for at in range(0, size, 1 << 24):
            block = stream.digest(length=min(1 << 24, size - at), seek=at)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


async def run_measured(*args: str) -> tuple[str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MEASURED,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    peak_kb = int(err.decode().rsplit("PEAK_KB", 1)[1].split()[0])
    return out.decode().strip(), peak_kb // 1024


@pytest.mark.timeout(600)
async def test_one_gib_streams_in_and_out_in_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    want = write_big_file(source, GIB)
    async with local_mesh(tmp_path, nodes=10) as mesh:
        url = ["--home", str(mesh.home), "--url", mesh.url]
        cap, put_peak = await run_measured(*url, "put", str(source), "--policy", "k=3,n=10")
        assert cap.startswith("motes:r1:")
        source.unlink()  # room on disk; the hash is kept
        out = tmp_path / "back.bin"
        _, get_peak = await run_measured(*url, "get", cap, "-o", str(out))
    assert file_hash(out) == want
    assert put_peak < MEMORY_BOUND_MIB, f"put peaked at {put_peak} MiB"
    assert get_peak < MEMORY_BOUND_MIB, f"get peaked at {get_peak} MiB"
