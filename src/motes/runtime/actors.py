"""Keyed actor activations inside a worker, with state kept in KV between calls.

One activation per key: the key's shard is served by one instance, and inside it calls to
one key run one at a time. The activations live in the instance's ``Sandbox``; this shell
persists their state (bytes the host hands out) after each call that changed it, before
the reply is sent, so a restarted worker, or another instance taking over the shard,
resumes from the last answered call.

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

from ..errors import Conflict, MotesError, RetryableError
from ..sandbox import Sandbox
from ..wire import subjects
from ..wire.bus import KV
from ..wire.codec import error_reply
from ..wire.messages import ActorCall, Err, Ok

__all__ = ["Actors", "key_token", "shard_of"]

log = logging.getLogger(__name__)

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
    saved: bytes
    revision: int
    """The KV revision ``saved`` came from (0: no state yet); saves expect it."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Actors:
    """Serves the activations of one actor mote for the shards this instance owns."""

    def __init__(self, host: Sandbox, app: str, mote: str, kv: KV) -> None:
        self.host = host
        self.app = app
        self.mote = mote
        self.kv = kv
        self.qualname = f"{app}.{mote}"
        self._active: OrderedDict[str, _Activation] = OrderedDict()
        self._activating = asyncio.Lock()

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
        # A deleted key's marker too: the next save must expect its revision.
        entry = await self.kv.get(kv_key, deleted=True)
        saved = (entry.value or b"") if entry is not None else b""
        revision = entry.revision if entry is not None else 0
        await self.host.activate(key, saved or None)
        act = _Activation(saved, revision)
        self._active[key] = act
        while len(self._active) > _MAX_ACTIVE:
            old_key, old = next(iter(self._active.items()))
            if old.lock.locked():
                break
            del self._active[old_key]  # state is already saved: dropping it is safe
            self.host.deactivate(old_key)
        return act

    def _forget(self, key: str) -> None:
        self._active.pop(key, None)
        self.host.deactivate(key)

    async def call(self, req: ActorCall) -> Ok | Err:
        for _ in range(_ATTEMPTS):
            try:
                act = await self._activate(req.key)
            except MotesError as exc:
                return error_reply(exc)
            async with act.lock:
                if self._active.get(req.key) is not act:
                    continue  # replaced while we waited for the lock
                reply = await self.host.call_actor(
                    req.key, req.method, req.args, req.kwargs, req.timeout_ms
                )
                try:
                    await self._save(req.key, act)
                    return reply
                except Conflict:
                    self._forget(req.key)  # reload the newer state, run again
                except MotesError as exc:
                    # The call's effect cannot be kept: forget it, reload the last saved state.
                    self._forget(req.key)
                    return error_reply(exc)
            # Another instance holds this key too (shards are moving): let it go first.
            await asyncio.sleep(random.uniform(0, 0.005))
        busy = RetryableError(
            f"actor {self.qualname}[{req.key!r}] was changed elsewhere {_ATTEMPTS} times "
            "while this call ran; retry it"
        )
        return error_reply(busy)

    async def _save(self, key: str, act: _Activation) -> None:
        state = self.host.state(key)
        if state == act.saved:
            return
        kv_key = subjects.actor_kv_key(self.app, self.mote, key_token(key))
        act.revision = await self.kv.update(kv_key, state, last=act.revision)
        act.saved = state
