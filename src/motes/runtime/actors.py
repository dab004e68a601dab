"""Keyed actor activations inside a worker, with state kept in KV between calls.

One activation per key: the key's shard is served by one instance, and inside it calls to
one key run one at a time. State (the object's attributes) is saved after each call that
changed it, before the reply is sent, so a restarted worker, or another instance taking
over the shard, resumes from the last answered call.

Saves are compare-and-set on the KV revision the activation loaded. While shards move
(an upgrade, a failover, a node that comes back) two instances may briefly both serve a
key; the one whose save finds a newer revision reloads the state and runs the call again,
so no answered call's effect is lost or applied to stale state.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ..errors import BadArgument, EncodeError, MotesError, RetryableError
from ..wire import subjects
from ..wire.codec import error_reply
from ..wire.messages import ActorCall, Err, Ok
from .handlers import Handler

__all__ = ["ActorHost", "key_token", "shard_of"]

log = logging.getLogger(__name__)

_state_encoder = msgspec.msgpack.Encoder()
_MAX_ACTIVE = 10_000
_ATTEMPTS = 10


def shard_of(key: str, nshards: int) -> int:
    """The shard that owns ``key``: stable across processes and Python versions."""
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % nshards


def key_token(key: str) -> str:
    """A KV-safe, reversible spelling of an actor key."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=") or "_"


@dataclass(slots=True)
class _Activation:
    obj: Any
    saved: bytes
    revision: int
    """The KV revision ``saved`` came from (0: no state yet); saves expect it."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Conflict(Exception):
    """Another activation saved this key's state since we loaded it."""


class ActorHost:
    """Serves the activations of one actor class for the shards this instance owns."""

    def __init__(self, cls: type, app: str, mote: str, node: str, kv: KeyValue) -> None:
        self.cls = cls
        self.app = app
        self.mote = mote
        self.node = node
        self.kv = kv
        self.qualname = f"{app}.{mote}"
        self._active: OrderedDict[str, _Activation] = OrderedDict()
        self._handlers: dict[str, Handler] = {}
        self._activating = asyncio.Lock()

    def _method(self, name: str) -> Handler:
        handler = self._handlers.get(name)
        if handler is None:
            fn = getattr(self.cls, name, None)
            if name.startswith("_") or not callable(fn):
                raise BadArgument(self.qualname, f"actor has no public method {name!r}")
            handler = Handler(fn, f"{self.qualname}.{name}", self.node)
            self._handlers[name] = handler
        return handler

    async def _activate(self, key: str) -> _Activation:
        act = self._active.get(key)
        if act is not None:
            self._active.move_to_end(key)
            return act
        async with self._activating:  # one load per key, even when first calls race
            act = self._active.get(key)
            return act if act is not None else await self._load(key)

    async def _load(self, key: str) -> _Activation:
        kv_key = subjects.actor_kv_key(self.app, self.mote, key_token(key))
        revision = 0
        try:
            entry = await self.kv.get(kv_key)
            saved, revision = entry.value or b"", entry.revision or 0
        except KeyDeletedError as exc:
            saved, revision = b"", exc.entry.revision if exc.entry else 0
        except KeyNotFoundError:
            saved = b""
        if saved:
            obj: Any = object.__new__(self.cls)  # restore state without running __init__
            obj.__dict__.update(msgspec.msgpack.decode(saved))
        else:
            obj = self.cls()
        act = _Activation(obj, saved, revision)
        self._active[key] = act
        while len(self._active) > _MAX_ACTIVE:
            old_key, old = next(iter(self._active.items()))
            if old.lock.locked():
                break
            del self._active[old_key]  # state is already saved: dropping it is safe
        return act

    async def call(self, req: ActorCall) -> Ok | Err:
        try:
            handler = self._method(req.method)
        except MotesError as exc:
            return error_reply(exc)
        for _ in range(_ATTEMPTS):
            try:
                act = await self._activate(req.key)
            except MotesError as exc:
                return error_reply(exc)
            async with act.lock:
                if self._active.get(req.key) is not act:
                    continue  # replaced while we waited for the lock
                reply = await handler.invoke([act.obj, *req.args], req.kwargs, req.timeout_ms)
                try:
                    await self._save(req.key, act)
                    return reply
                except _Conflict:
                    self._active.pop(req.key, None)  # reload the newer state, run again
                except MotesError as exc:
                    # The call's effect cannot be kept: forget it, reload the last saved state.
                    self._active.pop(req.key, None)
                    return error_reply(exc)
            # Another instance holds this key too (shards are moving): let it go first.
            await asyncio.sleep(random.uniform(0, 0.005))
        busy = RetryableError(
            f"actor {self.qualname}[{req.key!r}] was changed elsewhere {_ATTEMPTS} times "
            "while this call ran; retry it"
        )
        return error_reply(busy)

    async def _save(self, key: str, act: _Activation) -> None:
        try:
            state = _state_encoder.encode(vars(act.obj))
        except (TypeError, ValueError, OverflowError) as exc:
            what = f"the state of actor {self.qualname}"
            raise EncodeError(what, type(act.obj).__name__, str(exc)) from None
        if state == act.saved:
            return
        kv_key = subjects.actor_kv_key(self.app, self.mote, key_token(key))
        try:
            act.revision = await self.kv.update(kv_key, state, last=act.revision)
        except KeyWrongLastSequenceError:
            raise _Conflict from None
        act.saved = state
