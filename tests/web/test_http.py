"""The dashboard's HTTP face without a browser: who is refused and why, what a session
can do, bad input answered with typed errors, loopback only, and large meshes paged.

The mesh here is the in-memory lattice (the browser tests use a real one); the HTTP
server, the auth, the hub and the API are the real ones.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from motes.client import Mesh
from motes.config import Config
from motes.errors import RequestError
from motes.identity import KeyKind, SigningKey
from motes.identity.records import seal_node, signer_of
from motes.testing import FAST, eventually
from motes.web import Dashboard
from motes.wire import resources
from motes.wire.memory import MemoryLattice
from motes.wire.messages import Inventory, NodeRecord


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    dash: Dashboard
    mesh: Mesh

    @property
    def port(self) -> int:
        return self.dash.port

    async def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str = "",
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        def send() -> Reply:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            h = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            if cookie:
                h["Cookie"] = cookie
            data = None
            if body is not None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            out = Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
            conn.close()
            return out

        return await asyncio.to_thread(send)

    async def login(self) -> str:
        """The session cookie, by the one-time link."""
        link = urlsplit(self.dash.link())
        reply = await self.request("GET", f"{link.path}?{link.query}")
        assert reply.status == 303 and reply.headers["location"] == "/"
        return reply.headers["set-cookie"].split(";")[0]


def _records(n: int) -> list[bytes]:
    """``n`` node records as the lattice holds them: each signed by its node's key."""
    inv = Inventory(cpus=4, memory_mb=8192, arch="x86_64", os="linux")
    out = []
    for i in range(n):
        key = SigningKey.generate(KeyKind.NODE)
        record = NodeRecord(
            id=key.id, name=f"box-{i:03d}", public_key=key.public, host="h", pid=i, inventory=inv
        )
        out.append(seal_node(key, record))
    return out


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    lattice = MemoryLattice()
    bus = lattice.connect("dash")
    nodes = await bus.kv(resources.NODES)
    for record in _records(450):  # more than a page: the views page and summarise
        await nodes.put(signer_of(record, KeyKind.NODE), record)
    mesh = Mesh(bus, Config(home=str(tmp_path), timing=FAST))
    dash = Dashboard(mesh)
    started = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(dash.run(started=started))
        await started.wait()
        yield Served(dash, mesh)
        task.cancel()


ROUTES = [
    ("GET", "/"),
    ("GET", "/static/app.js"),
    ("GET", "/api/nodes"),
    ("GET", "/api/motes"),
    ("GET", "/api/stream?topics=nodes"),
    ("GET", "/api/logs/stream"),
    ("GET", "/api/blocks"),
    ("POST", "/api/blocks"),
    ("POST", "/api/links"),
]


async def test_every_route_is_refused_without_a_session(served: Served) -> None:
    for method, path in ROUTES:
        body = {"props": {"title": "x"}} if method == "POST" else None
        reply = await served.request(
            method, path, body=body, headers={"Origin": f"http://127.0.0.1:{served.port}"}
        )
        assert reply.status == 401, (method, path, reply.status)
        if path.startswith("/api"):
            assert reply.json()["error"]["code"] == "unauthorized"
    forged = await served.request("GET", "/api/nodes", cookie=f"motes_s{served.port}=guess")
    assert forged.status == 401
    assert await served.mesh.blocks.all() == []  # the refused write wrote nothing


async def test_a_link_works_once_and_sets_an_httponly_strict_cookie(served: Served) -> None:
    link = urlsplit(served.dash.link())
    first = await served.request("GET", f"{link.path}?{link.query}")
    assert first.status == 303
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert link.query.split("=", 1)[1] not in cookie  # the session is not the token
    again = await served.request("GET", f"{link.path}?{link.query}")
    assert again.status == 401  # spent
    page = await served.request("GET", "/", cookie=cookie.split(";")[0])
    assert page.status == 200 and b'<script type="module" src="/static/app.js">' in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_other_pages_and_other_host_names_are_refused(served: Served) -> None:
    cookie = await served.login()
    evil = await served.request(
        "GET", "/api/nodes", cookie=cookie, headers={"Origin": "http://evil.example"}
    )
    assert evil.status == 403
    site = await served.request(
        "GET", "/api/nodes", cookie=cookie, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert site.status == 403
    rebound = await served.request(
        "GET", "/api/nodes", cookie=cookie, headers={"Host": f"evil.example:{served.port}"}
    )
    assert rebound.status == 421
    # A write authenticated by the cookie must say where it comes from.
    blind = await served.request(
        "POST", "/api/blocks", cookie=cookie, body={"props": {"title": "x"}}
    )
    assert blind.status == 403
    ok = await served.request(
        "POST",
        "/api/blocks",
        cookie=cookie,
        body={"props": {"title": "x"}},
        headers={"Origin": f"http://127.0.0.1:{served.port}"},
    )
    assert ok.status == 201


async def test_a_program_gets_a_bearer_session_from_a_token(served: Served) -> None:
    token = urlsplit(served.dash.link()).query.split("=", 1)[1]
    reply = await served.request("POST", "/api/session", body={"token": token})
    session = reply.json()["session"]
    authed = await served.request(
        "GET", "/api/overview", headers={"Authorization": f"Bearer {session}"}
    )
    assert authed.status == 200 and authed.json()["nodes"] == 450
    spent = await served.request("POST", "/api/session", body={"token": token})
    assert spent.status == 401


async def test_bad_input_gets_typed_errors(served: Served) -> None:
    cookie = await served.login()
    origin = {"Origin": f"http://127.0.0.1:{served.port}"}

    async def post(path: str, body: Any, method: str = "POST") -> dict[str, Any]:
        reply = await served.request(method, path, cookie=cookie, body=body, headers=origin)
        assert reply.status >= 400, reply.body
        error: dict[str, Any] = reply.json()["error"]
        return {"status": reply.status, "code": error["code"], "message": error["message"]}

    assert (await post("/api/blocks", b"{not json"))["code"] == "bad_json"
    assert (await post("/api/blocks", [1, 2]))["code"] == "bad_json"
    bad = await post("/api/blocks", {"id": "has space"})
    assert (bad["status"], bad["code"]) == (400, "bad_block") and "block id" in bad["message"]
    missing = await post("/api/blocks/nope", {"props": {"a": 1}}, method="PATCH")
    assert (missing["status"], missing["code"]) == (404, "unknown_block")
    made = await served.request(
        "POST", "/api/blocks", cookie=cookie, body={"id": "b1"}, headers=origin
    )
    assert made.status == 201
    stale = await post("/api/blocks/b1", {"props": {"a": 1}, "expect": 999}, method="PATCH")
    assert (stale["status"], stale["code"]) == (409, "conflict")
    assert (await post("/api/stream?topics=bogus", None, method="GET"))["code"] == "bad_query"
    assert (await post("/api/logs?app=a%20b", None, method="GET"))["code"] == "bad_query"
    assert (await post("/api/nowhere", None, method="GET"))["status"] == 404
    huge = await served.request(
        "POST", "/api/blocks", cookie=cookie, body=b"x" * (2 << 20), headers=origin
    )
    assert huge.status == 413


async def test_a_large_mesh_is_paged_and_summarised(served: Served) -> None:
    cookie = await served.login()
    first = (await served.request("GET", "/api/nodes?limit=100", cookie=cookie)).json()
    assert (first["total"], len(first["items"])) == (450, 100)
    assert first["items"][0]["name"] == "box-000"
    assert sum(b["count"] for b in first["histograms"]["instances"]) == 450
    last = (await served.request("GET", "/api/nodes?offset=400&limit=100", cookie=cookie)).json()
    assert [n["name"] for n in last["items"]][-1] == "box-449" and len(last["items"]) == 50
    found = (await served.request("GET", "/api/nodes?q=box-12", cookie=cookie)).json()
    assert {n["name"] for n in found["items"]} == {f"box-{i}" for i in range(120, 130)}


async def test_the_stream_tells_a_page_what_changed(served: Served) -> None:
    """Read the event stream by hand: a change to blocks arrives as a notice naming it."""
    cookie = await served.login()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(
            f"GET /api/stream?topics=blocks HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            f"Cookie: {cookie}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"200 OK" in head and b"text/event-stream" in head
        first = await reader.readuntil(b"\n\n")  # the first notice: everything is new
        assert b"event: change" in first
        await served.mesh.blocks.create({"title": "t"}, id="live")
        async with asyncio.timeout(2):
            notice = await reader.readuntil(b"\n\n")
        assert b'"blocks"' in notice
    finally:
        writer.close()
    await eventually(lambda: _no_listeners(served), what="the stream's listener to go")


async def _no_listeners(served: Served) -> bool:
    return not served.dash.topics.watched("blocks")


async def test_nothing_listens_beyond_loopback_unless_asked(served: Served) -> None:
    assert {addr for addr, _ in served.dash.server.addresses} == {"127.0.0.1"}
    with pytest.raises(RequestError, match="not a loopback address"):
        Dashboard(served.mesh, bind="0.0.0.0")
    outside = _outside_address()
    if outside is not None:  # a machine with a non-loopback address: nothing answers there
        with pytest.raises(OSError):
            socket.create_connection((outside, served.port), timeout=2).close()


def _outside_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
            addr: str = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr
