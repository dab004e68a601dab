"""``Dashboard``: the web app served from this machine, live from the mesh.

One process (``motes dashboard``) holds one connection to the mesh, follows it (``Hub``,
``Sources``), recomputes blocks' cells (``Recomputer``) and serves the page, its assets
(shipped in the package: no CDN, nothing fetched from anywhere) and the JSON API on
127.0.0.1. ``link()`` gives a one-time login link; ``auth`` says what every request must
carry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from importlib import resources as pkg
from urllib.parse import quote

from ..client import Mesh
from ..errors import RequestError
from ._http import EventStream, HttpError, HttpServer, Request, Response
from .api import Api
from .auth import Auth, is_loopback
from .hub import Hub
from .sources import Sources
from .topics import Topics

__all__ = ["Dashboard"]

log = logging.getLogger(__name__)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class Dashboard:
    def __init__(
        self,
        mesh: Mesh,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        compute: bool = True,
    ) -> None:
        """``bind``: the address to listen on; anything but loopback needs
        ``allow_remote`` (``motes dashboard --bind ADDR`` asks for it). ``compute``:
        recompute blocks' cells here."""
        if not is_loopback(bind) and not allow_remote:
            raise RequestError(
                f"refusing to serve the dashboard on {bind}: it is not a loopback address "
                "(pass --bind explicitly to serve other machines)"
            )
        self.mesh = mesh
        self.bind = bind
        self.topics = Topics()
        self.hub = Hub(mesh, self.topics)
        self.recomputer = mesh.blocks.cells.recomputer() if compute else None
        self.sources = Sources(mesh, self.topics, self.recomputer)
        self.api = Api(mesh, self.hub, self.sources, self.topics, self.recomputer)
        self.server = HttpServer(self._handle, host=bind, port=port, decorate=_secure)
        self.auth: Auth | None = None
        self._static = _load_static()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base(self) -> str:
        host = self.bind
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def link(self) -> str:
        """A new one-time login link."""
        assert self.auth is not None, "start() the dashboard first"
        return f"{self.base}/login?token={quote(self.auth.new_link_token())}"

    async def start(self) -> None:
        await self.server.start()
        self.auth = Auth(bind=self.bind, port=self.port)

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        """Serve until cancelled; ``started`` is set once it listens and has the picture."""
        if self.auth is None:
            await self.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.hub.run())
                tg.create_task(self.sources.run())
                tg.create_task(self._relay_node_changes())
                await self.hub.ready.wait()
                if started is not None:
                    started.set()
        finally:
            await self.server.close()

    async def _relay_node_changes(self) -> None:
        """Share health follows the nodes: check again when nodes change."""
        with self.topics.listen({"nodes"}) as listener:
            states: dict[str, str] = {}
            while True:
                await listener.next()
                now = {nid: v.state for nid, v in self.hub.nodes.items()}
                if now != states:
                    states = now
                    self.sources.nodes_changed()

    # --- requests ----------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response | EventStream:
        auth = self.auth
        assert auth is not None
        if request.path == "/login":
            return self._login(request, auth)
        if request.path == "/api/session" and request.method == "POST":
            auth.check_origin(request)
            body = request.json()
            token = body.get("token") if isinstance(body, dict) else None
            session = auth.exchange(token) if isinstance(token, str) else None
            if session is None:
                raise HttpError(401, "that token is not valid (each works once)", "unauthorized")
            return Response.json({"session": session})
        auth.check(request)
        if request.path == "/api/links" and request.method == "POST":
            return Response.json({"url": self.link()})
        if request.path.startswith("/api/"):
            return await self.api.handle(request)
        if request.method != "GET":
            raise HttpError(405, "only GET here")
        return self._asset(request)

    def _login(self, request: Request, auth: Auth) -> Response:
        auth.check_origin(request)
        session = auth.exchange(request.query.get("token", ""))
        if session is None:
            body = (
                "<!doctype html><title>motes dashboard</title><h1>This link is spent</h1>"
                "<p>Each link <code>motes dashboard</code> prints works once. Run it again, "
                "or use <em>New link</em> in an open dashboard.</p>"
            )
            return Response(401, body.encode(), _TYPES[".html"])
        headers = {"Location": "/", "Set-Cookie": auth.set_cookie(session)}
        return Response(303, b"", "text/plain", headers)

    def _asset(self, request: Request) -> Response:
        name = "index.html" if request.path == "/" else request.path.removeprefix("/static/")
        found = self._static.get(name)
        if found is None:
            raise HttpError(404, f"no page {request.path}")
        data, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", _type(name), headers)
        return Response(200, data, _type(name), headers)


def _type(name: str) -> str:
    return next((t for ext, t in _TYPES.items() if name.endswith(ext)), "application/octet-stream")


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every asset, read once from the package."""
    out = {}
    for item in (pkg.files("motes.web") / "static").iterdir():
        if item.is_file() and not item.name.startswith("."):
            data = item.read_bytes()
            out[item.name] = (data, '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"')
    return out


def _secure(request: Request, headers: dict[str, str]) -> None:
    headers.setdefault("Cache-Control", "no-store")
    headers["Content-Security-Policy"] = _CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
