"""The ``Bus``: everything Motes needs from the lattice, as one protocol.

Two implementations keep the same contract (``tests/wire/test_bus_contract.py`` runs
against both): ``wire._nats.NatsBus`` (with ``_nats_js`` and ``_nats_errors``, the only
modules that import nats-py), and
``wire.memory.MemoryBus``, an in-memory lattice for fast tests of the I/O shells.

What the protocol offers, and how it reads at a call site:

- core messages: ``publish``, ``subscribe`` (a ``Subscription`` is an async iterator of
  ``Message``; consume it in a task of your TaskGroup), ``request`` (one answer), and
  ``scatter`` (every answer until ``expected`` or the deadline);
- connection state as an async iterator (``status``), never a callback;
- JetStream: ``kv(bucket)`` (get-or-none, put, create, compare-and-set update, delete,
  history, a snapshot of live keys, and ``watch``), durable streams (``publish_durable``,
  ``pull`` consumers whose messages are acked only after their effect is durable,
  ``replay`` of a stream from its start), and the bundle object store.

Errors are Motes errors, mapped once in the implementation: ``TransportError`` (the
connection is gone or full), ``NoResponders`` (nobody listens on a subject), ``NoReply``
(the deadline passed), ``Conflict`` (a create or compare-and-set found another revision),
``PayloadTooLarge``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from .resources import BucketSpec, StreamSpec

__all__ = [
    "KV",
    "Bus",
    "ConnState",
    "Entry",
    "JetMsg",
    "Message",
    "Objects",
    "Op",
    "PullConsumer",
    "StoredMsg",
    "StreamState",
    "Subscription",
    "Watch",
]


class Message(Protocol):
    """One core message as a subscriber sees it."""

    @property
    def subject(self) -> str: ...
    @property
    def reply(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, str] | None: ...


class Subscription(Protocol):
    """A live subscription: ``async for msg in sub`` until it is unsubscribed or drained.

    Use it as ``async with await bus.subscribe(...) as sub`` so it always ends.
    """

    def __aiter__(self) -> AsyncIterator[Message]: ...

    @property
    def pending(self) -> int:
        """Messages delivered to us and not yet taken from the iterator."""
        ...

    async def drain(self) -> None:
        """Stop receiving; messages already delivered are still yielded, then it ends."""
        ...

    async def unsubscribe(self) -> None:
        """Stop at once; the iterator ends."""
        ...

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ConnState(enum.StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    CLOSED = "closed"


class Op(enum.StrEnum):
    PUT = "put"
    DEL = "del"
    PURGE = "purge"


@dataclass(frozen=True, slots=True)
class Entry:
    """One revision of a KV key; ``value`` is None for a delete or purge."""

    key: str
    value: bytes | None
    revision: int
    op: Op = Op.PUT
    created: float = 0.0
    """Unix time the revision was written."""


class Watch(Protocol):
    """The entries of a KV watch: the current ones first, then each change as it comes."""

    def __aiter__(self) -> AsyncIterator[Entry]: ...

    async def next(self, timeout: float) -> Entry | None:
        """The next entry, or None if none came within ``timeout`` seconds."""
        ...

    async def stop(self) -> None: ...

    async def __aenter__(self) -> Watch: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class KV(Protocol):
    """One KV bucket. Keys are subject tokens joined by dots (``subjects`` builds them)."""

    @property
    def name(self) -> str: ...

    async def get(self, key: str, *, deleted: bool = False) -> Entry | None:
        """The key's current entry, or None if it was never written or is deleted.

        ``deleted``: a deleted key's delete marker instead of None (its revision is what
        a compare-and-set write must expect)."""
        ...

    async def put(self, key: str, value: bytes) -> int:
        """Write a value; returns its revision."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Write only if the key has no live value; ``Conflict`` otherwise."""
        ...

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        """Write only if the key's revision is still ``last``; ``Conflict`` otherwise."""
        ...

    async def delete(self, key: str) -> None: ...

    async def history(self, key: str) -> list[Entry]:
        """Every revision the bucket still keeps, oldest first (empty if none)."""
        ...

    async def items(self, keys: str = ">") -> dict[str, Entry]:
        """A snapshot of every live key matching ``keys``."""
        ...

    async def watch(
        self, keys: str = ">", *, history: bool = False, updates_only: bool = False
    ) -> Watch:
        """Follow ``keys`` (a key or a filter): current values first (every kept revision
        with ``history``; none with ``updates_only``), deletes included, then every
        change."""
        ...


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """A message read back from a stream."""

    subject: str
    data: bytes
    seq: int
    time: float
    """Unix time the stream stored it."""
    pending: int = 0
    """Messages after this one that the reader has not seen yet."""


class JetMsg(Protocol):
    """A message taken from a pull consumer: settle it after its effect is durable."""

    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def deliveries(self) -> int:
        """How many times it has been delivered (1 the first time)."""
        ...

    @property
    def pending(self) -> int:
        """Messages of its consumer not yet delivered when this one was: the backlog."""
        ...

    async def ack(self) -> None: ...
    async def nak(self, delay: float = 0.0) -> None: ...
    async def term(self) -> None: ...
    async def in_progress(self) -> None: ...


class PullConsumer(Protocol):
    async def fetch(self, batch: int, timeout: float) -> list[JetMsg]:
        """Up to ``batch`` messages; fewer (maybe none) when ``timeout`` passes first."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StreamState:
    messages: int
    subjects: dict[str, int] = field(default_factory=dict)
    """Messages per subject (when asked for with a filter)."""


class Objects(Protocol):
    """An object store bucket (app bundles)."""

    async def get(self, name: str) -> bytes | None: ...
    async def put(self, name: str, data: bytes) -> None: ...
    async def exists(self, name: str) -> bool: ...


class Bus(Protocol):
    """One principal's connection to the lattice."""

    @property
    def max_payload(self) -> int: ...
    @property
    def connected(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def refused(self) -> str:
        """Why the lattice shut this connection out after it was made (its credential
        revoked or expired), or ``""``."""
        ...

    def new_inbox(self) -> str: ...

    async def publish(
        self, subject: str, data: bytes, *, reply: str = "", headers: dict[str, str] | None = None
    ) -> None: ...

    async def subscribe(
        self, subject: str, *, queue: str = "", pending: int = 65536
    ) -> Subscription: ...

    async def request(
        self, subject: str, data: bytes, *, timeout: float, headers: dict[str, str] | None = None
    ) -> Message:
        """One reply; ``NoResponders`` at once if nobody listens, ``NoReply`` at the deadline."""
        ...

    async def scatter(
        self, subject: str, data: bytes, *, expected: int | None, timeout: float
    ) -> list[bytes]:
        """Every answer to one request, until ``expected`` arrived or ``timeout`` passed."""
        ...

    async def flush(self, timeout: float = 10.0) -> None: ...

    def status(self) -> AsyncIterator[ConnState]:
        """Connection changes from now on, ending after CLOSED."""
        ...

    async def close(self) -> None: ...

    # --- JetStream ----------------------------------------------------------------------

    async def kv(self, bucket: BucketSpec) -> KV:
        """The bucket, created with its spec's settings if it does not exist yet."""
        ...

    async def objects(self, bucket: BucketSpec) -> Objects: ...

    async def ensure_stream(self, stream: StreamSpec) -> None: ...
    async def replicate(self, stream: str, replicas: int) -> None:
        """Keep ``replicas`` copies of JetStream stream ``stream`` (a bucket's too)."""
        ...

    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str = "", timeout: float = 10.0
    ) -> int:
        """Publish into a stream and wait for it to be stored; returns its sequence."""
        ...

    async def publish_durable_nowait(
        self, subject: str, data: bytes, *, msg_id: str = ""
    ) -> Awaitable[int]:
        """Publish into a stream; await the result for the store's acknowledgement."""
        ...

    async def stream_state(self, stream: str, subjects: str = "") -> StreamState | None:
        """Message counts (per subject matching ``subjects``); None if there is no stream."""
        ...

    async def stream_first(self, stream: str, subject: str) -> StoredMsg | None:
        """The oldest message on ``subject`` still in the stream."""
        ...

    async def consumer_pending(self, stream: str, durable: str) -> int | None:
        """Messages delivered and not yet acked by a durable consumer; None if none exists."""
        ...

    async def pull(
        self,
        stream: StreamSpec,
        *,
        durable: str,
        subject: str,
        ack_wait: float,
        max_ack_pending: int,
    ) -> PullConsumer:
        """A pull consumer (created if needed) whose messages wait for an explicit ack."""
        ...

    def replay(
        self, stream: StreamSpec, subjects: str, *, follow: bool
    ) -> AsyncIterator[StoredMsg]:
        """The stream's messages on ``subjects``, oldest first; with ``follow``, then
        every new one until the iterator is closed."""
        ...
