"""``mesh.exec``: run a native program on a node of the mesh, confined there.

The request goes to one node's exec subject, which names the caller
(``motes.exec.{node}.{principal}``); the node checks the caller's ``run`` grant and runs
the program under bubblewrap (else Landlock, else a typed refusal: never unconfined),
see ``node.exec``. With no ``node`` named, the nodes whose labels match are tried in a
random order, skipping those that are gone or refuse the caller, until one runs it; a
run that timed out is never tried again elsewhere (it may have had effects).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import msgspec

from ..errors import (
    BadMessage,
    CallTimeout,
    Forbidden,
    NoReply,
    NoResponders,
    RequestError,
    SandboxDenied,
)
from ..wire import subjects
from ..wire.codec import decode_reply, encode, raise_for
from ..wire.messages import EXEC_REPLY_OVERHEAD, Confinement, Err, ExecRequest, ExecResult, Ok
from ._core import Core

__all__ = ["run_program"]

_START_S = 5.0
"""Allowance beyond the program's own deadline: the sandbox's start and the reply."""


async def run_program(
    core: Core,
    argv: Sequence[str],
    *,
    files: Mapping[str, str],
    writable: Mapping[str, str],
    net: bool,
    timeout: float,
    memory_mb: int,
    output_bytes: int | None,
    env: Mapping[str, str],
    stdin: bytes,
    node: str | None,
    labels: Mapping[str, str],
) -> ExecResult:
    """See ``Mesh.exec``."""
    argv = _argv(argv)
    carry = core.bus.max_payload - EXEC_REPLY_OVERHEAD
    if output_bytes is not None and output_bytes > carry:
        raise SandboxDenied(f"output_bytes={output_bytes}", f"a reply carries at most {carry}")
    try:
        confine = Confinement(
            files=dict(files),
            writable=dict(writable),
            net=net,
            timeout_s=timeout,
            memory_mb=memory_mb,
            output_bytes=carry if output_bytes is None else output_bytes,
            env=dict(env),
        )
    except (TypeError, msgspec.ValidationError) as exc:
        raise RequestError(f"mesh.exec: {exc}") from None
    data = encode(ExecRequest(argv=argv, confine=confine, stdin=stdin))
    last: Forbidden | NoResponders | None = None
    for nid in await _candidates(core, node, labels):
        subject = subjects.exec_request(nid, core.principal)
        wait = timeout + _START_S
        try:
            msg = await core.bus.request(subject, data, timeout=wait)
            reply = decode_reply(bytes(msg.data))
            if not isinstance(reply, Ok | Err):
                raise BadMessage(f"node {nid} answered an exec request with a batch")
            value = raise_for(reply)
        except NoReply:
            raise CallTimeout(f"{argv[0]} on {nid}", wait) from None
        except (Forbidden, NoResponders) as exc:
            if node is not None:
                raise
            last = exc  # gone, or not ours to use: the next one may be
            continue
        return msgspec.convert(value, ExecResult)
    if last is not None:
        raise last
    raise RequestError(f"no node in this mesh has the labels {dict(labels)} (`motes nodes`)")


def _argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise SandboxDenied(repr(argv), "argv must be a non-empty list of strings")
    return list(argv)


async def _candidates(core: Core, node: str | None, labels: Mapping[str, str]) -> list[str]:
    if node is not None:
        return [await core.node_id(node)]
    records = await core.node_records()
    out = [
        nid
        for nid, rec in records.items()
        if all(rec.labels.get(k) == v for k, v in labels.items())
    ]
    random.shuffle(out)
    return out
