"""The store as a user types it: put, cat, get -o, ls, check, du, dataset create/add."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_cli import motes


@pytest.fixture
def home(tmp_path: Path):
    home = tmp_path / "home"
    yield home
    if (home / "mesh.json").exists():
        motes(home, "down", check=False)


def test_put_get_ls_check_du_and_datasets(home: Path, tmp_path: Path) -> None:
    motes(home, "up", "--nodes", "3", "--detach")
    src = tmp_path / "photos"
    (src / "2026").mkdir(parents=True)
    (src / "2026" / "a.jpg").write_bytes(os.urandom(1_500_000))
    (src / "notes.txt").write_text("hello\n")

    cap = motes(home, "put", str(src / "notes.txt")).stdout.strip()
    assert cap.startswith("motes:r1:")
    assert motes(home, "cat", cap).stdout == "hello\n"
    assert motes(home, "get", cap).stdout == "hello\n"

    tree = motes(home, "put", str(src)).stdout.strip()
    listing = motes(home, "ls", tree).stdout
    assert "2026" in listing and "notes.txt" in listing and "dir" in listing
    out = tmp_path / "out"
    motes(home, "get", tree, "-o", str(out))
    assert (out / "2026" / "a.jpg").read_bytes() == (src / "2026" / "a.jpg").read_bytes()

    check = motes(home, "check", cap).stdout
    assert check.startswith("healthy: ") and "missing shares: 0" in check
    du = motes(home, "du").stdout
    assert "node-" not in du or "SHARES" in du
    assert "file(s)" in du

    bad = motes(home, "cat", "motes:r1:nonsense", check=False)
    assert bad.returncode == 2 and "bad capability" in bad.stderr
    newer = motes(home, "get", cap.replace(":r1:", ":r5:"), check=False)
    assert newer.returncode == 2 and "newer than this Motes knows" in newer.stderr

    created = motes(home, "dataset", "create", "pics").stdout
    assert "write: motes:w1:" in created and "read:  motes:r1:" in created
    read_cap = created.split("read:")[1].split()[0]
    assert (home / "datasets" / "pics.cap").stat().st_mode & 0o777 == 0o600
    motes(home, "dataset", "add", "pics", str(src / "2026"))
    motes(home, "dataset", "add", "pics", str(src / "notes.txt"), "--as", "readme")
    listing = motes(home, "ls", read_cap).stdout
    assert "2026" in listing and "readme" in listing
    assert "pics" in motes(home, "dataset", "list").stdout
    again = motes(home, "dataset", "create", "pics", check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    motes(home, "down")
