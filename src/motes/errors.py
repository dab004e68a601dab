"""Every exception Motes raises, in one tree, branched by what the caller should do.

::

    MotesError
    ├── RetryableError                 try again later; nothing was lost
    │   ├── TransportError             the lattice is unreachable (also ConnectionError)
    │   ├── NoResponders               nobody listens on a subject right now
    │   ├── CallTimeout                the deadline passed (also TimeoutError)
    │   │   └── NoReply                a lattice request got no answer in time
    │   ├── Conflict                   a compare-and-set write lost to a newer revision
    │   ├── NoInstance                 the mote is known but has no running instance
    │   ├── StoreUnhappy               too few nodes may hold shares for the upload's happiness
    │   └── DataUnavailable            fewer than k good shares of some stored data are reachable
    ├── RequestError                   fix the request; retrying the same one will fail again
    │   ├── UnknownMote                no deployed app declares this mote (also LookupError)
    │   ├── UnknownFlow                no deployed app declares this flow (also LookupError)
    │   ├── EncodeError                a value cannot travel as msgpack (also TypeError)
    │   ├── BadArgument                the mote rejected an argument's type (also TypeError)
    │   ├── PayloadTooLarge            a message exceeds the size limit (also ValueError)
    │   ├── BadMessage                 bytes that are not a valid Motes message (also ValueError)
    │   ├── BadApp                     an app cannot be bundled or deployed (also ValueError)
    │   ├── MeshNotRunning             no mesh at the given home or URL
    │   ├── BadCapability              a capability string is malformed or corrupt (ValueError)
    │   │   └── UnknownCapability      a capability version this Motes does not know
    │   ├── NotStored                  nothing in the mesh answers for a capability (LookupError)
    │   ├── Unsupported                this machine lacks what the request needs (e.g. FUSE)
    │   │   └── SandboxUnavailable     no sandbox that confines as asked can run here
    │   ├── Unauthorized               no valid credential: the lattice or a signer refused it
    │   ├── Forbidden                  a known principal asked for what no grant allows
    │   │   └── OverBudget             a run grant's budget on a node is used up
    │   ├── SandboxDenied              a sandbox may not show what was asked (PermissionError)
    │   ├── BadBlock                   a block or its edit is malformed (also ValueError)
    │   └── UnknownBlock               no block has this id (also LookupError)
    ├── RemoteError                    the mote itself raised; carries the remote traceback
    └── FatalError                     give up: something is broken, not busy
        ├── StartupError               a component failed to start (server, node, worker)
        ├── SandboxLimit               confined code hit a limit (deadline, memory, output...)
        └── IntegrityError             a signed or hashed record does not verify: forged or damaged

A ``RemoteError`` whose remote type is a built-in exception is also an instance of
that built-in, so ``except ValueError`` catches a ``ValueError`` raised in a mote.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

__all__ = [
    "BadApp",
    "BadArgument",
    "BadBlock",
    "BadCapability",
    "BadMessage",
    "CallTimeout",
    "Conflict",
    "DataUnavailable",
    "EncodeError",
    "FatalError",
    "Forbidden",
    "IntegrityError",
    "MeshNotRunning",
    "MotesError",
    "NoInstance",
    "NoReply",
    "NoResponders",
    "NotStored",
    "OverBudget",
    "PayloadTooLarge",
    "RemoteError",
    "RequestError",
    "RetryableError",
    "SandboxDenied",
    "SandboxLimit",
    "SandboxUnavailable",
    "StartupError",
    "StoreUnhappy",
    "TransportError",
    "Unauthorized",
    "UnknownBlock",
    "UnknownCapability",
    "UnknownFlow",
    "UnknownMote",
    "Unsupported",
    "error_from_wire",
]


class MotesError(Exception):
    """Base of every Motes error. ``code`` names the type on the wire."""

    code: ClassVar[str] = "motes"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def wire_fields(self) -> dict[str, Any]:
        """Fields that rebuild this error on the other side of the wire."""
        return {}


class RetryableError(MotesError):
    """The request may succeed later; nothing already accepted was lost."""

    code = "retryable"


class TransportError(RetryableError, ConnectionError):
    """The lattice (NATS) could not be reached or dropped the connection."""

    code = "transport"


class NoResponders(RetryableError):
    """Nobody subscribes to the subject a request went to (the server said so at once)."""

    code = "no_responders"

    def __init__(self, subject: str) -> None:
        super().__init__(f"nothing listens on {subject}")
        self.subject = subject

    def wire_fields(self) -> dict[str, Any]:
        return {"subject": self.subject}


class CallTimeout(RetryableError, TimeoutError):
    """A call's deadline passed before a reply arrived."""

    code = "timeout"

    def __init__(self, mote: str, timeout: float) -> None:
        super().__init__(f"call to {mote} got no reply within {timeout:g} s")
        self.mote = mote
        self.timeout = timeout

    def wire_fields(self) -> dict[str, Any]:
        return {"mote": self.mote, "timeout": self.timeout}


class NoReply(CallTimeout):
    """A request on the lattice got no answer before its deadline."""

    code = "no_reply"

    def __init__(self, subject: str, timeout: float) -> None:
        MotesError.__init__(self, f"no reply on {subject} within {timeout:g} s")
        self.mote = self.subject = subject
        self.timeout = timeout

    def wire_fields(self) -> dict[str, Any]:
        return {"subject": self.subject, "timeout": self.timeout}


class Conflict(RetryableError):
    """A create or compare-and-set write found a revision other than the one expected."""

    code = "conflict"

    def __init__(self, key: str, expected: int, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        want = "no value" if expected == 0 else f"revision {expected}"
        super().__init__(f"{key} changed (expected {want}){extra}")
        self.key = key
        self.expected = expected
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"key": self.key, "expected": self.expected, "detail": self.detail}


class NoInstance(RetryableError):
    """The mote is deployed but no instance is running to take the call."""

    code = "no_instance"

    def __init__(self, mote: str, reason: str = "") -> None:
        hint = reason or f"see `motes ps` and `motes why {mote}`"
        super().__init__(f"mote {mote} has no running instance ({hint})")
        self.mote = mote
        self.reason = reason

    def wire_fields(self) -> dict[str, Any]:
        return {"mote": self.mote, "reason": self.reason}


class RequestError(MotesError):
    """The request itself is wrong; the same request will fail again."""

    code = "request"


class UnknownMote(RequestError, LookupError):
    """No deployed app declares the named mote."""

    code = "unknown_mote"

    def __init__(self, mote: str, known: list[str] | None = None) -> None:
        tail = (
            f"; deployed: {', '.join(known)}" if known else "; `motes apps` lists what is deployed"
        )
        super().__init__(f"unknown mote {mote!r}{tail}")
        self.mote = mote
        self.known = known or []

    def wire_fields(self) -> dict[str, Any]:
        return {"mote": self.mote, "known": self.known}


class UnknownFlow(RequestError, LookupError):
    """No deployed app declares the named flow (``App.flow``)."""

    code = "unknown_flow"

    def __init__(self, flow: str, known: list[str] | None = None) -> None:
        tail = f"; flows: {', '.join(known)}" if known else "; declare one with App.flow"
        super().__init__(f"unknown flow {flow!r}{tail}")
        self.flow = flow
        self.known = known or []

    def wire_fields(self) -> dict[str, Any]:
        return {"flow": self.flow, "known": self.known}


class EncodeError(RequestError, TypeError):
    """A value cannot be encoded as msgpack; ``what`` names it (e.g. ``argument 1``)."""

    code = "encode"

    def __init__(self, what: str, type_name: str, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"{what} of type {type_name} cannot be sent as msgpack{extra} "
            "(use built-in types, dataclasses or msgspec Structs)"
        )
        self.what = what
        self.type_name = type_name
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "type_name": self.type_name, "detail": self.detail}


class BadArgument(RequestError, TypeError):
    """An argument does not match the mote's declared parameter type."""

    code = "bad_argument"

    def __init__(self, mote: str, detail: str) -> None:
        super().__init__(f"bad argument for {mote}: {detail}")
        self.mote = mote
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"mote": self.mote, "detail": self.detail}


class PayloadTooLarge(RequestError, ValueError):
    """A message is larger than the lattice accepts."""

    code = "too_large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size} bytes, over the {limit}-byte message limit "
            "(pass large data through the store and send its capability instead)"
        )
        self.what = what
        self.size = size
        self.limit = limit

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "size": self.size, "limit": self.limit}


class BadMessage(RequestError, ValueError):
    """Bytes that do not decode as the expected Motes message."""

    code = "bad_message"

    def __init__(self, detail: str) -> None:
        super().__init__(f"malformed message: {detail}")
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"detail": self.detail}


class BadApp(RequestError, ValueError):
    """An app cannot be loaded, bundled or deployed as given."""

    code = "bad_app"


class MeshNotRunning(RequestError):
    """No mesh is running at the given home, and no URL was given."""

    code = "no_mesh"


class BadCapability(RequestError, ValueError):
    """A capability string that cannot be parsed, or whose checksum does not match."""

    code = "bad_cap"

    def __init__(self, cap: str, detail: str) -> None:
        shown = cap if len(cap) <= 24 else cap[:21] + "..."
        super().__init__(f"bad capability {shown!r}: {detail}")
        self.cap = cap
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"cap": self.cap, "detail": self.detail}


class UnknownCapability(BadCapability):
    """A well-formed capability of a kind or version this Motes does not know."""

    code = "unknown_cap"


class NotStored(RequestError, LookupError):
    """No node holds anything for this capability (never stored, or every share is gone)."""

    code = "not_stored"

    def __init__(self, what: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(f"nothing stored for {what}{extra}")
        self.what = what
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "detail": self.detail}


class Unsupported(RequestError):
    """This machine lacks something the request needs (a kernel feature, a library)."""

    code = "unsupported"


class Unauthorized(RequestError):
    """The credential presented is missing, malformed, expired or revoked."""

    code = "unauthorized"


class SandboxUnavailable(Unsupported):
    """No sandbox that confines as asked can run on this machine; ``reason`` says why."""

    code = "no_sandbox"

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot confine here: {reason}")
        self.reason = reason

    def wire_fields(self) -> dict[str, Any]:
        return {"reason": self.reason}


class SandboxDenied(RequestError, PermissionError):
    """A sandbox was asked to show ``what`` and must not: ``reason`` says why."""

    code = "sandbox_denied"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"the sandbox refuses {what}: {reason}")
        self.what = what
        self.reason = reason

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "reason": self.reason}


class Forbidden(RequestError, PermissionError):
    """``principal`` may not do ``action`` on ``resource``: no grant allows it."""

    code = "forbidden"

    def __init__(self, principal: str, action: str, resource: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{principal} may not {action} {resource}{extra}")
        self.principal = principal
        self.action = action
        self.resource = resource
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "detail": self.detail,
        }


class OverBudget(Forbidden):
    """A node refuses ``person``'s instance: their ``run`` grant's ``budget`` there is
    used up (``used`` of ``allowed``: instances at once, or CPU seconds today)."""

    code = "over_budget"

    def __init__(self, person: str, node: str, budget: str, used: float, allowed: float) -> None:
        detail = f"its run grant's {budget} budget: {_num(used)} of {_num(allowed)} used"
        super().__init__(person, "run more on", node, detail)
        self.person = person
        self.node = node
        self.budget = budget
        self.used = used
        self.allowed = allowed

    def wire_fields(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "node": self.node,
            "budget": self.budget,
            "used": self.used,
            "allowed": self.allowed,
        }


class BadBlock(RequestError, ValueError):
    """A block, or an edit of one, is malformed: says which part and what is allowed."""

    code = "bad_block"

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what}: {detail}")
        self.what = what
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "detail": self.detail}


class UnknownBlock(RequestError, LookupError):
    """No block has this id (it was never created, or it was deleted)."""

    code = "unknown_block"

    def __init__(self, block: str) -> None:
        super().__init__(f"no block {block!r} (list blocks with mesh.blocks.roots())")
        self.block = block

    def wire_fields(self) -> dict[str, Any]:
        return {"block": self.block}


class StoreUnhappy(RetryableError):
    """An upload could not place shares on enough distinct nodes; nothing was recorded."""

    code = "unhappy"

    def __init__(self, need: int, have: int, detail: str = "") -> None:
        extra = f"; {detail}" if detail else ""
        super().__init__(
            f"an upload needs shares on {need} distinct nodes (servers of happiness) "
            f"but only {have} may hold them{extra}"
        )
        self.need = need
        self.have = have
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"need": self.need, "have": self.have, "detail": self.detail}


class DataUnavailable(RetryableError):
    """Fewer than ``need`` good shares of a stored piece are reachable right now."""

    code = "unavailable"

    def __init__(self, what: str, need: int, good: int, detail: str = "") -> None:
        extra = f"; {detail}" if detail else ""
        super().__init__(f"{what}: {good} good share(s) reachable, {need} needed{extra}")
        self.what = what
        self.need = need
        self.good = good
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "need": self.need, "good": self.good, "detail": self.detail}


class RemoteError(MotesError):
    """The mote raised an exception; ``traceback`` is the remote one, as text."""

    code = "remote"

    def __init__(
        self, mote: str, type_name: str, detail: str, traceback: str = "", node: str = ""
    ) -> None:
        where = f" on {node}" if node else ""
        super().__init__(f"{mote} raised {type_name}{where}: {detail}")
        self.mote = mote
        self.type_name = type_name
        self.detail = detail
        self.traceback = traceback
        self.node = node

    def wire_fields(self) -> dict[str, Any]:
        return {
            "mote": self.mote,
            "type_name": self.type_name,
            "detail": self.detail,
            "traceback": self.traceback,
            "node": self.node,
        }

    def __str__(self) -> str:
        if self.traceback:
            return f"{self.message}\n--- remote traceback ---\n{self.traceback.rstrip()}"
        return self.message


class FatalError(MotesError):
    """Something is broken rather than busy; retrying will not help."""

    code = "fatal"


class StartupError(FatalError):
    """A component (nats-server, a node agent, a worker) failed to start."""

    code = "startup"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3f}".rstrip("0")


class SandboxLimit(FatalError):
    """Confined code (``what``) hit its ``limit``: it used ``used`` of ``allowed`` ``unit``.

    The run was stopped (its whole process tree killed); the same input will hit the
    same limit, so the caller gives up or asks for a larger one.
    """

    code = "sandbox_limit"

    def __init__(self, what: str, limit: str, used: float, allowed: float, unit: str) -> None:
        super().__init__(
            f"{what} exceeded its {limit} limit: used {_num(used)} {unit} (allowed {_num(allowed)})"
        )
        self.what = what
        self.limit = limit
        self.used = used
        self.allowed = allowed
        self.unit = unit

    def wire_fields(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "limit": self.limit,
            "used": self.used,
            "allowed": self.allowed,
            "unit": self.unit,
        }


class IntegrityError(FatalError):
    """A signed or hashed record does not verify: it was forged, edited or damaged.

    Never "fix your request": the data itself cannot be trusted, whoever sent it.
    """

    code = "integrity"

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what} does not verify: {detail}")
        self.what = what
        self.detail = detail

    def wire_fields(self) -> dict[str, Any]:
        return {"what": self.what, "detail": self.detail}


_BY_CODE: dict[str, type[MotesError]] = {
    cls.code: cls
    for cls in (
        MotesError,
        RetryableError,
        TransportError,
        NoResponders,
        CallTimeout,
        NoReply,
        Conflict,
        NoInstance,
        RequestError,
        UnknownMote,
        UnknownFlow,
        EncodeError,
        BadArgument,
        PayloadTooLarge,
        BadMessage,
        BadApp,
        MeshNotRunning,
        BadCapability,
        UnknownCapability,
        NotStored,
        Unsupported,
        SandboxUnavailable,
        SandboxDenied,
        SandboxLimit,
        Unauthorized,
        Forbidden,
        OverBudget,
        BadBlock,
        UnknownBlock,
        StoreUnhappy,
        DataUnavailable,
        RemoteError,
        FatalError,
        StartupError,
        IntegrityError,
    )
}
_REMOTE_SUBCLASSES: dict[str, type[RemoteError]] = {}


# Built-ins that a remote error also becomes, so `except ValueError` works across the wire.
_MIRRORED = frozenset(
    {
        "ArithmeticError",
        "AssertionError",
        "IndexError",
        "KeyError",
        "LookupError",
        "NotImplementedError",
        "OverflowError",
        "RuntimeError",
        "TypeError",
        "ValueError",
        "ZeroDivisionError",
    }
)


def _remote_class(type_name: str) -> type[RemoteError]:
    """A RemoteError subclass that is also the built-in exception it mirrors."""
    if type_name not in _MIRRORED:
        return RemoteError
    cls = _REMOTE_SUBCLASSES.get(type_name)
    if cls is None:
        cls = type(f"Remote{type_name}", (RemoteError, getattr(builtins, type_name)), {})
        _REMOTE_SUBCLASSES[type_name] = cls
    return cls


def error_from_wire(code: str, message: str, fields: dict[str, Any]) -> MotesError:
    """Rebuild an error sent by another process; unknown codes become a plain MotesError."""
    if code == RemoteError.code:
        cls = _remote_class(str(fields.get("type_name", "")))
        try:
            return cls(**fields)
        except TypeError:
            return RemoteError("?", "Exception", message)
    cls2 = _BY_CODE.get(code)
    if cls2 is None:
        return MotesError(message)
    try:
        return cls2(**fields) if fields else cls2(message)
    except TypeError:
        return MotesError(message)
