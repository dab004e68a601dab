"""The dashboard's JSON API: the same data the CLI shows, for the page and any other
front end (``docs/dashboard.md`` documents every route).

Errors are ``{"error": {"status", "code", "message"}}``: a Motes error keeps its code
(``bad_block``, ``unknown_block``, ``conflict``, ``unknown_mote``, ...), with 400 for a
request to fix, 404 for something that is not there, 409 for a lost compare-and-set and
503 for "try again" (no instance, no leader, a timeout).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..blocks import Block, Blocks, Recomputer
from ..client import Mesh
from ..errors import (
    BadMessage,
    Conflict,
    MotesError,
    NotStored,
    RequestError,
    RetryableError,
    UnknownBlock,
    UnknownMote,
)
from ..wire import resources, subjects
from ..wire.codec import decode
from ..wire.messages import LogBatch
from . import views
from ._http import EventStream, HttpError, Request, Response, Send
from .hub import Hub
from .sources import Sources
from .topics import Topics

__all__ = ["TOPICS", "Api"]

TOPICS = frozenset({"nodes", "motes", "placements", "queues", "store", "blocks"})
_LOG_TAIL = 500
_MAX_LOG_TAIL = 5000

Route = Callable[..., Awaitable[Response | EventStream]]


class Api:
    def __init__(
        self, mesh: Mesh, hub: Hub, sources: Sources, topics: Topics, recomputer: Recomputer | None
    ) -> None:
        self.mesh = mesh
        self.hub = hub
        self.sources = sources
        self.topics = topics
        self.recomputer = recomputer
        self.blocks: Blocks = mesh.blocks
        self.routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("GET", re.compile(r"/api/stream"), self.stream),
            ("GET", re.compile(r"/api/overview"), self.overview),
            ("GET", re.compile(r"/api/nodes"), self.nodes),
            ("GET", re.compile(r"/api/motes"), self.motes),
            ("GET", re.compile(r"/api/placements"), self.placements),
            ("GET", re.compile(r"/api/why/(?P<mote>[^/]+)"), self.why),
            ("GET", re.compile(r"/api/queues"), self.queues),
            ("GET", re.compile(r"/api/store"), self.store),
            ("POST", re.compile(r"/api/store/check"), self.store_check),
            ("GET", re.compile(r"/api/logs"), self.logs),
            ("GET", re.compile(r"/api/logs/stream"), self.log_stream),
            ("GET", re.compile(r"/api/blocks"), self.block_roots),
            ("POST", re.compile(r"/api/blocks"), self.block_create),
            ("GET", re.compile(r"/api/blocks/(?P<bid>[^/]+)"), self.block_get),
            ("PATCH", re.compile(r"/api/blocks/(?P<bid>[^/]+)"), self.block_update),
            ("DELETE", re.compile(r"/api/blocks/(?P<bid>[^/]+)"), self.block_delete),
            ("POST", re.compile(r"/api/blocks/(?P<bid>[^/]+)/move"), self.block_move),
            ("POST", re.compile(r"/api/blocks/(?P<bid>[^/]+)/compute"), self.block_compute),
            ("GET", re.compile(r"/api/blocks/(?P<bid>[^/]+)/history"), self.block_history),
        ]

    async def handle(self, request: Request) -> Response | EventStream:
        allowed = []
        for method, pattern, route in self.routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            try:
                return await route(request, **match.groupdict())
            except MotesError as exc:
                raise _http_error(exc) from None
        if allowed:
            raise HttpError(405, f"{request.path} takes {', '.join(sorted(set(allowed)))}")
        raise HttpError(404, f"no API route {request.path}")

    # --- live ----------------------------------------------------------------------------

    async def stream(self, request: Request) -> EventStream:
        wants = {t for t in request.query.get("topics", "").split(",") if t}
        unknown = wants - TOPICS
        if unknown or not wants:
            raise HttpError(400, f"topics: give some of {sorted(TOPICS)}", "bad_query")

        async def produce(send: Send) -> None:
            with self.topics.listen(wants) as listener:
                while True:
                    changed = await listener.next()
                    await send("change", json.dumps({"topics": changed}))

        return EventStream(produce)

    async def overview(self, request: Request) -> Response:
        hub = self.hub
        return Response.json(
            {
                "nodes": len(hub.nodes),
                "states": _count(v.state for v in hub.nodes.values()),
                "apps": len(hub.apps),
                "motes": sum(len(a.motes) for a in hub.apps.values()),
                "instances": len(hub.instances),
                "files": len(self.sources.files),
                "leader": next((v.record.name for v in hub.nodes.values() if v.leader), None),
                "revisions": self.topics.revs,
                "computing": self.recomputer is not None,
            }
        )

    async def nodes(self, request: Request) -> Response:
        return Response.json(views.nodes(self.hub, request.query))

    async def motes(self, request: Request) -> Response:
        return Response.json(views.motes(self.hub, request.query))

    async def placements(self, request: Request) -> Response:
        return Response.json(views.placements(self.hub, request.query))

    async def why(self, request: Request, mote: str) -> Response:
        import msgspec

        return Response.json(msgspec.to_builtins(await self.mesh.ops.why(mote)))

    async def queues(self, request: Request) -> Response:
        await self.sources.refresh_queues()
        return Response.json(views.queues(self.sources))

    async def store(self, request: Request) -> Response:
        return Response.json(views.store(self.hub, self.sources, request.query))

    async def store_check(self, request: Request) -> Response:
        body = _object(request)
        si = body.get("si")
        if not isinstance(si, str) or si not in self.sources.files:
            raise HttpError(404, f"no stored file {si!r}", "not_stored")
        health = await self.sources.check(si)
        return Response.json({"si": si, "error": health.error, "checked_at": health.checked_at})

    # --- logs ----------------------------------------------------------------------------

    def _log_filter(self, query: dict[str, str]) -> tuple[str, str, int]:
        app, mote, node = (query.get(k) or None for k in ("app", "mote", "node"))
        for kind, value in (("app", app), ("mote", mote)):
            if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,62}", value):
                raise HttpError(400, f"{kind} {value!r} is not a valid name", "bad_query")
        if node is not None and not re.fullmatch(r"[A-Za-z0-9]{1,64}", node):
            raise HttpError(400, f"node {node!r} is not a node id", "bad_query")
        if mote is not None and app is None:
            raise HttpError(400, "name the app of the mote (app=...)", "bad_query")
        try:
            limit = min(_MAX_LOG_TAIL, max(1, int(query.get("limit", str(_LOG_TAIL)))))
        except ValueError:
            raise HttpError(400, "limit must be a whole number", "bad_query") from None
        return subjects.log_filter(app, mote, node), query.get("iid", ""), limit

    def _lines(self, batch: LogBatch) -> list[dict[str, Any]]:
        name = self.hub.name_of(batch.node)
        return [
            {
                "ts": line.ts,
                "node": batch.node,
                "node_name": name,
                "mote": f"{batch.app}.{batch.mote}",
                "iid": batch.iid,
                "stream": line.stream,
                "text": line.text,
            }
            for line in batch.lines
        ]

    async def logs(self, request: Request) -> Response:
        filt, iid, limit = self._log_filter(request.query)
        tail: deque[dict[str, Any]] = deque(maxlen=limit)
        replay = self.mesh.bus.replay(resources.LOGS, filt, follow=False)
        async with _closing(replay):
            async for msg in replay:
                batch = _batch(msg.data)
                if batch is not None and (not iid or batch.iid == iid):
                    tail.extend(self._lines(batch))
        return Response.json({"lines": list(tail)})

    async def log_stream(self, request: Request) -> EventStream:
        filt, iid, limit = self._log_filter(request.query)

        async def produce(send: Send) -> None:
            tail: deque[dict[str, Any]] | None = deque(maxlen=limit)
            await send("ready", "{}")
            replay = self.mesh.bus.replay(resources.LOGS, filt, follow=True)
            async with _closing(replay):
                async for msg in replay:
                    batch = _batch(msg.data)
                    lines = self._lines(batch) if batch and (not iid or batch.iid == iid) else []
                    if tail is not None:  # catching up: only the last `limit` lines go out
                        tail.extend(lines)
                        if msg.pending == 0:
                            await send("lines", json.dumps(list(tail)))
                            tail = None
                    elif lines:
                        await send("lines", json.dumps(lines))

        return EventStream(produce)

    # --- blocks --------------------------------------------------------------------------

    async def _find(self, bid: str) -> Block | None:
        if self.recomputer is not None and bid in self.recomputer.blocks:
            return self.recomputer.blocks[bid]
        return await self.blocks.find(bid)

    async def _with_cells(self, block: Block) -> dict[str, Any]:
        out = block.to_json()
        states = await self.blocks.cells.states(block, self._find)
        cells = {}
        for prop, cell in states.items():
            c = cell.to_json()
            if self.recomputer is not None and not c["reason"]:
                c["reason"] = self.recomputer.problem(block.id, prop)
            cells[prop] = c
        out["cells"] = cells
        return out

    async def block_roots(self, request: Request) -> Response:
        roots = await self.blocks.roots()
        return Response.json({"blocks": [b.to_json() for b in roots]})

    async def block_get(self, request: Request, bid: str) -> Response:
        block = await self.blocks.get(bid)
        kids = await self.blocks.children(bid)
        children = [await self._with_cells(c) for c in kids]
        columns: list[str] = []
        declared = block.props.get("columns")
        if isinstance(declared, list) and all(isinstance(c, str) for c in declared):
            columns = list(declared)
        else:
            for c in kids:
                for name in [*c.props, *c.computed]:
                    if name not in columns:
                        columns.append(name)
        path: list[dict[str, Any]] = []
        parent = block.parent
        while parent is not None and len(path) < 32:
            found = await self._find(parent)
            if found is None:
                break
            path.insert(0, {"id": found.id, "title": found.props.get("title", found.id)})
            parent = found.parent
        return Response.json(
            {
                "block": await self._with_cells(block),
                "children": children,
                "columns": columns,
                "path": path,
            }
        )

    async def block_create(self, request: Request) -> Response:
        body = _object(request)
        block = await self.blocks.create(
            body.get("props") or {},
            parent=body.get("parent"),
            text=body.get("text", ""),
            computed=body.get("computed") or {},
            id=body.get("id"),
            index=_int_or_none(body.get("index"), "index"),
        )
        return Response.json(block.to_json(), 201)

    async def block_update(self, request: Request, bid: str) -> Response:
        body = _object(request)
        block = await self.blocks.update(
            bid,
            props=body.get("props"),
            text=body.get("text"),
            computed=body.get("computed"),
            expect=_int_or_none(body.get("expect"), "expect"),
            compute=self.recomputer is None,
        )
        return Response.json(block.to_json())

    async def block_delete(self, request: Request, bid: str) -> Response:
        await self.blocks.delete(bid)
        return Response.json({"deleted": bid})

    async def block_move(self, request: Request, bid: str) -> Response:
        body = _object(request)
        moved = await self.blocks.move(
            bid, body.get("parent"), _int_or_none(body.get("index"), "index")
        )
        return Response.json(moved.to_json())

    async def block_compute(self, request: Request, bid: str) -> Response:
        body = _object(request) if request.body else {}
        prop = body.get("prop")
        if prop is not None and not isinstance(prop, str):
            raise HttpError(400, "prop must be a property name", "bad_block")
        cells = await self.blocks.cells.compute(bid, prop, force=bool(body.get("force")))
        return Response.json({p: c.to_json() for p, c in cells.items()})

    async def block_history(self, request: Request, bid: str) -> Response:
        return Response.json({"revisions": [b.to_json() for b in await self.blocks.history(bid)]})


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object", "bad_json")
    return body


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HttpError(400, f"{what} must be a whole number", "bad_block")
    return value


def _batch(data: bytes) -> LogBatch | None:
    try:
        return decode(data, LogBatch)
    except BadMessage:
        return None


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _http_error(exc: MotesError) -> HttpError:
    if isinstance(exc, UnknownBlock | UnknownMote | NotStored):
        status = 404
    elif isinstance(exc, Conflict):
        status = 409
    elif isinstance(exc, RetryableError):
        status = 503
    elif isinstance(exc, RequestError):
        status = 400
    else:
        status = 500
    return HttpError(status, str(exc), exc.code)


@contextlib.asynccontextmanager
async def _closing(iterator: Any) -> Any:
    """Close a replay (its consumer on the lattice) however the reading ends."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
