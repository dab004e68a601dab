"""A small HTTP/1.1 server on asyncio streams: requests in, responses or event streams out.

Only what the dashboard needs, with limits on everything a client sends: a request head
of at most 16 KiB, a body of at most ``max_body`` bytes (``Content-Length`` only; chunked
uploads are refused), a deadline for each request's head, and a cap on connections.
Keep-alive is supported. An ``EventStream`` response is a ``text/event-stream``: its
producer sends events while a comment line is written every ``ping_s`` seconds, and it
ends as soon as the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["EventStream", "HttpError", "HttpServer", "Request", "Response", "Send"]

log = logging.getLogger(__name__)

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
LINGER_BYTES = 16 << 20
"""After a refusal, at most this much of an unread body is read and dropped."""
LINGER_S = 2.0


class HttpError(Exception):
    """Answered as ``{"error": {"status", "code", "message"}}`` with that status."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes = b""

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
        return None

    def json(self) -> Any:
        if not self.body:
            raise HttpError(400, "this request needs a JSON body", "bad_json")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"the body is not JSON: {exc}", "bad_json") from None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, separators=(",", ":"), default=str).encode())


Send = Callable[[str, str], Awaitable[None]]
"""``await send(event, data)``: one server-sent event."""


@dataclass(slots=True)
class EventStream:
    produce: Callable[[Send], Awaitable[None]]
    ping_s: float = 15.0
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response | EventStream]]
Decorate = Callable[[Request, dict[str, str]], None]
"""Adds headers every response carries (security headers)."""


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        decorate: Decorate | None = None,
        max_body: int = 1 << 20,
        max_connections: int = 64,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.decorate = decorate or (lambda req, headers: None)
        self.max_body = max_body
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens: (address, port) of every socket."""
        assert self._server is not None
        return [s.getsockname()[:2] for s in self._server.sockets]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=HEAD_LIMIT
        )
        self.port = self.addresses[0][1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._idle.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self.max_connections:
            writer.close()
            return
        self._writers.add(writer)
        self._idle.clear()
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._writers.discard(writer)
            if not self._writers:
                self._idle.set()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while True:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_S if first else IDLE_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            except asyncio.LimitOverrunError:
                await self._write(writer, None, _error(431, "the request head is too large"))
                return
            first = False
            try:
                request, keep = await self._read(head, reader)
            except HttpError as exc:
                await self._write(writer, None, _error(exc.status, exc.message, exc.code))
                await _linger(reader, writer)
                return
            try:
                reply = await self.handler(request)
            except HttpError as exc:
                reply = _error(exc.status, exc.message, exc.code)
            except Exception:
                log.exception("dashboard: %s %s failed", request.method, request.path)
                reply = _error(500, "the dashboard failed on this request; see its log")
            if isinstance(reply, EventStream):
                await self._stream(request, reader, writer, reply)
                return
            await self._write(writer, request, reply, keep)
            if not keep:
                return

    async def _read(self, head: bytes, reader: asyncio.StreamReader) -> tuple[Request, bool]:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise HttpError(400, "malformed request line") from None
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise HttpError(505, f"{version} is not supported")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or name != name.strip() or not name:
                raise HttpError(400, "malformed header line")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise HttpError(501, "chunked request bodies are not supported; send Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0 or length > self.max_body:
            raise HttpError(413, f"the body exceeds {self.max_body} bytes")
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        request = Request(
            method=method.upper(),
            path=unquote(parts.path) or "/",
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=body,
        )
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return request, keep

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        request: Request | None,
        reply: Response,
        keep: bool = False,
    ) -> None:
        headers = {
            "Content-Type": reply.content_type,
            "Content-Length": str(len(reply.body)),
            "Connection": "keep-alive" if keep else "close",
            **reply.headers,
        }
        if request is not None:
            self.decorate(request, headers)
        writer.write(_head(reply.status, headers) + reply.body)
        await writer.drain()

    async def _stream(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: EventStream,
    ) -> None:
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "Connection": "close",
            "X-Accel-Buffering": "no",
            **stream.headers,
        }
        self.decorate(request, headers)
        lock = asyncio.Lock()

        async def send(event: str, data: str) -> None:
            lines = "".join(f"data: {line}\n" for line in data.split("\n"))
            async with lock:
                writer.write(f"event: {event}\n{lines}\n".encode())
                await writer.drain()

        async def ping() -> None:
            while True:
                await asyncio.sleep(stream.ping_s)
                async with lock:
                    writer.write(b": ping\n\n")
                    await writer.drain()

        async with lock:
            writer.write(_head(200, headers))
            await writer.drain()
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(_quietly(_until_closed(reader))),
                tg.create_task(_quietly(stream.produce(send))),
                tg.create_task(_quietly(ping())),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Returns once the client has closed its side (an event stream reads nothing)."""
    while await reader.read(1024):
        pass


async def _quietly(coro: Awaitable[None]) -> None:
    """A stream's part ending with the connection's loss ends the stream, nothing more."""
    try:
        await coro
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    except Exception:
        log.exception("dashboard: an event stream failed")


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error(status: int, message: str, code: str = "") -> Response:
    err = HttpError(status, message, code)
    body = {"error": {"status": status, "code": err.code, "message": message}}
    return Response.json(body, status)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After refusing a request whose body we did not read: half-close, then read and
    drop what the client still sends (up to a bound), so that closing does not reset the
    connection before the client has read the refusal."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    left = LINGER_BYTES
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER_S):
            while left > 0:
                chunk = await reader.read(min(65536, left))
                if not chunk:
                    return
                left -= len(chunk)
