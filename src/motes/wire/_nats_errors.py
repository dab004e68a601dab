"""nats-py's exceptions and refusals, as Motes errors: the one place they are mapped."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import nats.errors
import nats.js.errors

from ..errors import Conflict, NoReply, NoResponders, PayloadTooLarge, TransportError

VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.I)
REFUSALS = (
    ("authorization violation", "no valid credential (or a revoked one)"),
    ("authentication expired", "its credential expired"),
    ("authentication revoked", "its credential was revoked"),
)


def refusal(message: str) -> str | None:
    low = message.lower()
    for needle, reason in REFUSALS:
        if needle in low:
            return reason
    return None


@contextlib.contextmanager
def mapped(what: str, key: str = "", expected: int = 0) -> Iterator[None]:
    """Turn nats-py's exceptions into the Motes error a caller can act on."""
    try:
        yield
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise Conflict(key or what, expected, exc.description or "") from None
    except nats.errors.NoRespondersError:
        raise NoResponders(what) from None
    except nats.errors.MaxPayloadError as exc:
        raise PayloadTooLarge(what, 0, 0) from exc
    except (
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionDrainingError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.OutboundBufferLimitError,
        nats.errors.StaleConnectionError,
        nats.errors.NoServersError,
    ) as exc:
        raise TransportError(f"{what}: {type(exc).__name__} {exc}".rstrip()) from None
    except nats.errors.TimeoutError:
        raise NoReply(what, 0) from None
    except nats.js.errors.APIError as exc:
        raise TransportError(f"{what}: the lattice refused it ({exc})") from None
    except nats.errors.Error as exc:
        raise TransportError(f"{what}: {exc!r}") from None
