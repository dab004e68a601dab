"""Tahoe-LAFS's side of the store benchmark, run with Tahoe's own Python in a loopback-only
network namespace.

``tahoe_driver.py serve TMP``: with Tahoe's CLI, create under TMP one introducer, ten storage
nodes and one client node (no storage of its own, no listener: it only connects out), all
on 127.0.0.1 with free ports, every node with ``shares.needed = 3``, ``shares.total = 10``,
``shares.happy = 7``, Tor and I2P disabled, only the ``tcp`` connection handler; ``tahoe
run`` each, wait until the client sees all ten storage servers connected, then answer:

- ``put`` ``{"path"}``: empty every storage node's share directory (not timed: convergent
  encryption would otherwise find the previous repetition's shares and upload nothing),
  then time ``PUT /uri`` on the client's web API with the file streamed as the body until
  the cap comes back; answers ``{"cap", "seconds", "shares", "share_bytes"}`` (what the
  storage nodes then hold, a check that the upload really happened);
- ``get`` ``{"cap", "path"}``: time ``GET /uri/CAP`` streamed into ``path``; answers
  ``{"seconds", "bytes"}``.

On ``quit`` every node is stopped by its pid (SIGTERM, then SIGKILL); each ``tahoe run``
also exits by itself if the driver dies, as its stdin (a pipe from the driver) closes.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from importlib.metadata import version
from pathlib import Path
from typing import Any

import _peer

TAHOE = str(Path(sys.executable).parent / "tahoe")
HOST = "127.0.0.1"
STORAGE_NODES = 10
K, N, HAPPY = 3, 10, 7
BLOCK = 1 << 20  # bytes per read/write when streaming a file to or from the web API
CONNECT_TIMEOUT = 180.0

# Appended to every node's tahoe.cfg: nothing but plain TCP, no Tor, no I2P.
NO_ANONYMITY = """
[connections]
tcp = tcp

[tor]
enabled = false

[i2p]
enabled = false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def endpoint(port: int) -> list[str]:
    return [f"--port=tcp:{port}:interface={HOST}", f"--location=tcp:{HOST}:{port}"]


def encoding() -> list[str]:
    return [f"--shares-needed={K}", f"--shares-total={N}", f"--shares-happy={HAPPY}"]


def create_all(steps: list[list[str]]) -> None:
    """Run ``tahoe`` CLI commands in parallel; raise with its output if one fails."""
    procs = [
        (argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for argv in steps
    ]
    for argv, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {out.decode(errors='replace')}")


def wait_for(what: str, check: Any, timeout: float, nodes: list[Node]) -> Any:
    """Poll ``check()`` until it returns something true (Tahoe offers no event to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            if node.proc.poll() is not None:
                raise RuntimeError(
                    f"{node.dir.name} exited ({node.proc.returncode}): {node.tail()}"
                )
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


class Node:
    """One ``tahoe run NODEDIR`` process, its output in ``NODEDIR/run.log``."""

    def __init__(self, nodedir: Path) -> None:
        self.dir = nodedir
        with open(nodedir / "tahoe.cfg", "a") as cfg:
            cfg.write(NO_ANONYMITY)
        with open(nodedir / "run.log", "wb") as log:
            # stdin stays a pipe from us: `tahoe run` exits when it closes (driver gone).
            self.proc = subprocess.Popen(
                [TAHOE, "run", str(nodedir)], stdin=subprocess.PIPE, stdout=log, stderr=log
            )

    def tail(self) -> str:
        try:
            return " | ".join((self.dir / "run.log").read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass


class Grid:
    """The introducer, the storage nodes and the client, under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nodes: list[Node] = []
        self.storage_dirs = [tmp / f"storage{i:02d}" for i in range(STORAGE_NODES)]
        self.web_port = 0

    def start(self) -> dict[str, Any]:
        intro_dir = self.tmp / "introducer"
        create_all(
            [[TAHOE, "create-introducer", "--listen=tcp", *endpoint(free_port()), str(intro_dir)]]
        )
        self.nodes.append(Node(intro_dir))
        furl_file = intro_dir / "private" / "introducer.furl"
        furl = wait_for(
            "the introducer's fURL", lambda: _read(furl_file), CONNECT_TIMEOUT, self.nodes
        )
        self.web_port = free_port()
        client_dir = self.tmp / "client"
        steps = [
            [
                TAHOE,
                "create-node",
                f"--introducer={furl}",
                f"--nickname=storage{i:02d}",
                "--listen=tcp",
                *endpoint(free_port()),
                "--webport=none",
                *encoding(),
                str(d),
            ]
            for i, d in enumerate(self.storage_dirs)
        ]
        steps.append(
            [
                TAHOE,
                "create-client",
                f"--introducer={furl}",
                "--nickname=client",
                f"--webport=tcp:{self.web_port}:interface={HOST}",
                *encoding(),
                str(client_dir),
            ]
        )
        create_all(steps)
        self.nodes += [Node(d) for d in [*self.storage_dirs, client_dir]]
        servers = wait_for(
            f"the client to connect to {STORAGE_NODES} storage servers",
            self._connected,
            CONNECT_TIMEOUT,
            self.nodes,
        )
        # Tahoe 1.20 talks to storage servers over HTTPS (Great Black Swamp) when they
        # announce it (the default), else over Foolscap; say which one this run measured.
        https = all(s["connection_status"] == "connected" for s in servers)
        return {"storage_protocol": "https (GBS)" if https else "foolscap or mixed"}

    def _connected(self) -> list[dict[str, Any]] | None:
        try:
            status, body = self._request("GET", "/?t=json")
        except OSError:
            return None  # the web port is not listening yet
        if status != 200:
            return None
        servers = [
            s
            for s in json.loads(body)["servers"]
            # "Connected to tcp:... via tcp" (Foolscap) or "connected" (HTTPS storage)
            if str(s["connection_status"]).lower().startswith("connected") and s["version"]
        ]
        return servers if len(servers) >= STORAGE_NODES else None

    def _request(self, method: str, url: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, self.web_port, timeout=30)
        try:
            conn.request(method, url)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for node in self.nodes:
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.signal(signal.SIGKILL)
                node.proc.wait()
            if node.proc.stdin is not None:
                node.proc.stdin.close()

    # --- the store ------------------------------------------------------------------------

    def _share_dirs(self) -> list[Path]:
        """Every storage index directory (``storage/shares/<prefix>/<SI>``) of every node."""
        out = []
        for d in self.storage_dirs:
            shares = d / "storage" / "shares"
            if shares.is_dir():
                for prefix in shares.iterdir():
                    if prefix.name != "incoming" and prefix.is_dir():
                        out += [si for si in prefix.iterdir() if si.is_dir()]
        return out

    def clear(self) -> None:
        for si in self._share_dirs():
            shutil.rmtree(si)

    def put(self, path: str) -> dict[str, Any]:
        self.clear()
        size = os.path.getsize(path)
        conn = http.client.HTTPConnection(HOST, self.web_port, timeout=3600, blocksize=BLOCK)
        try:
            with open(path, "rb") as f:
                t0 = time.perf_counter()
                conn.request("PUT", "/uri", body=f, headers={"Content-Length": str(size)})
                resp = conn.getresponse()
                body = resp.read()
                seconds = time.perf_counter() - t0
        finally:
            conn.close()
        if resp.status not in (200, 201):
            raise RuntimeError(f"PUT /uri: {resp.status} {body[:500]!r}")
        cap = body.decode().strip()
        if not cap.startswith("URI:CHK:") or not cap.endswith(f":{K}:{N}:{size}"):
            raise RuntimeError(f"PUT /uri answered {cap[:200]!r}, not a {K}-of-{N} CHK cap")
        files = [f for si in self._share_dirs() for f in si.iterdir()]
        return {
            "cap": cap,
            "seconds": seconds,
            "shares": len(files),
            "share_bytes": sum(f.stat().st_size for f in files),
        }

    def get(self, cap: str, path: str) -> dict[str, Any]:
        url = "/uri/" + urllib.parse.quote(cap, safe=":")
        conn = http.client.HTTPConnection(HOST, self.web_port, timeout=3600)
        got = 0
        try:
            with open(path, "wb") as f:
                t0 = time.perf_counter()
                conn.request("GET", url)
                resp = conn.getresponse()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: {resp.status} {resp.read(500)!r}")
                buf = bytearray(BLOCK)
                view = memoryview(buf)
                while n := resp.readinto(buf):
                    f.write(view[:n])
                    got += n
                seconds = time.perf_counter() - t0
        finally:
            conn.close()
        return {"seconds": seconds, "bytes": got}


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def serve(tmp: str) -> None:
    grid = Grid(Path(tmp))
    try:
        t0 = time.perf_counter()
        info = grid.start()
        _peer.send(
            {
                "ready": True,
                "version": version("tahoe-lafs"),
                "nodes": STORAGE_NODES,
                "k": K,
                "n": N,
                "happy": HAPPY,
                "client_is_storage": False,
                "startup_s": time.perf_counter() - t0,
                **info,
            }
        )
        _peer.serve({"put": grid.put, "get": grid.get})
    finally:
        grid.stop()


def main() -> None:
    _peer.run(serve)


if __name__ == "__main__":
    main()
