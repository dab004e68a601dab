"""Invoking a mote's Python code: argument checking, sync vs async, deadlines, errors.

A ``Handler`` wraps one callable. ``invoke`` never raises for anything the call did: it
returns ``Ok`` or an ``Err`` describing a bad argument, a timeout or the remote exception.

Sync handlers run inline on the worker's event loop. A worker hosts one instance and a
sync instance takes one call at a time, so nothing else on that loop is waiting for it,
and a hop to a thread would cost more than a small call itself (see bench/RESULTS.md).
Async handlers run with the call's deadline as a cancel scope. Durable calls run sync
handlers in a thread (so the worker can tell JetStream the call is still in progress);
a per-handler lock keeps sync handlers at one call at a time all the same.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, get_type_hints

import msgspec

from ..errors import BadArgument, CallTimeout, MotesError, RemoteError
from ..wire.codec import error_reply
from ..wire.messages import Err, Ok

__all__ = ["Handler"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Param:
    name: str
    type: Any


class Handler:
    """A callable prepared for calls arriving as (args, kwargs) decoded from msgpack."""

    def __init__(self, fn: Any, qualname: str, node: str) -> None:
        self.fn = fn
        self.qualname = qualname
        self.node = node
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        try:
            hints = get_type_hints(fn)
        except Exception:  # unresolvable annotations: accept any value, as plain Python does
            hints = {}
        self._positional: list[_Param] = []
        self._simple = True
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY):
                self._simple = False
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                self._positional.append(_Param(p.name, hints.get(p.name, Any)))
        self._hints = hints
        self._sync_lock = threading.Lock()

    def _check(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Bind arguments to the signature and convert them to the annotated types."""
        if self._simple and not kwargs and len(args) == len(self._positional):
            return [
                self._convert(p.name, p.type, a)
                for p, a in zip(self._positional, args, strict=False)
            ], {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise BadArgument(self.qualname, str(exc)) from None
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                bound.arguments[name] = self._convert(name, self._hints.get(name, Any), value)
        return list(bound.args), dict(bound.kwargs)

    def _convert(self, name: str, type_: Any, value: Any) -> Any:
        if type_ is Any:
            return value
        try:
            return msgspec.convert(value, type_)
        except msgspec.ValidationError as exc:
            raise BadArgument(self.qualname, f"{name}: {exc}") from None
        except TypeError:  # a type msgspec cannot check (a plain class): pass it through
            return value

    def invoke_sync(self, args: list[Any], kwargs: dict[str, Any]) -> Ok | Err:
        """One call of a sync handler, inline (or in a thread: one call at a time either way)."""
        try:
            args, kwargs = self._check(args, kwargs)
            with self._sync_lock:
                return Ok(self.fn(*args, **kwargs))
        except MotesError as exc:
            return error_reply(exc)
        except Exception as exc:
            return error_reply(self.remote_error(exc))

    async def invoke(self, args: list[Any], kwargs: dict[str, Any], timeout_ms: int) -> Ok | Err:
        """One call of either kind; async handlers are cancelled at the deadline."""
        if not self.is_async:
            return self.invoke_sync(args, kwargs)
        timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        try:
            args, kwargs = self._check(args, kwargs)
            async with asyncio.timeout(timeout):
                return Ok(await self.fn(*args, **kwargs))
        except TimeoutError:
            return error_reply(CallTimeout(self.qualname, timeout or 0))
        except MotesError as exc:
            return error_reply(exc)
        except Exception as exc:
            return error_reply(self.remote_error(exc))

    def remote_error(self, exc: BaseException) -> RemoteError:
        tb = "".join(traceback.format_exception(exc))
        print(f"[{self.qualname}] call failed:\n{tb}", file=sys.stderr, end="", flush=True)
        return RemoteError(self.qualname, type(exc).__name__, str(exc), tb, self.node)
