"""Who may use the dashboard: the holder of a one-time link, and no other web page.

``motes dashboard`` prints a link with a one-time token. Opening it exchanges the token
for a session: an ``HttpOnly``, ``SameSite=Strict`` cookie (its value never appears in a
URL, a log or the page's scripts), and the browser is redirected to the app, so the token
leaves the address bar and is no longer valid. A program gets a session the same way
(``POST /api/session`` with the token) and sends it as ``Authorization: Bearer``.

Every request, the page itself, its assets, the API and the event streams included,
needs a session. Besides that:

- the ``Host`` header must name this server as bound (``127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``): a page on another name that resolves here (DNS
  rebinding) is refused;
- a request carrying an ``Origin`` must come from this server's own origin, and a
  browser's cross-site request (``Sec-Fetch-Site: cross-site``) is refused;
- a state-changing request authenticated by the cookie must carry a matching
  ``Origin`` (browsers always send one for ``fetch`` writes), so no form on another
  page can post to it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict

from ._http import HttpError, Request

__all__ = ["Auth", "is_loopback"]

_SESSIONS = 32
"""At most this many sessions at once; a new one past that ends the oldest."""
_LINK_TTL_S = 600.0
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Auth:
    def __init__(self, *, bind: str, port: int) -> None:
        self.port = port
        self.cookie = f"motes_s{port}"
        """Cookies are per host, not per port: the name keeps two dashboards apart."""
        self.loopback = is_loopback(bind)
        hosts = {"127.0.0.1", "localhost", "[::1]"} if self.loopback else {bind}
        self.hosts = {f"{h}:{port}" for h in hosts}
        self._links: dict[str, float] = {}
        self._sessions: OrderedDict[str, float] = OrderedDict()

    # --- links and sessions ------------------------------------------------------------

    def new_link_token(self) -> str:
        """A token good for one exchange within ten minutes."""
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        self._links = {t: at for t, at in self._links.items() if now - at < _LINK_TTL_S}
        self._links[token] = now
        return token

    def exchange(self, token: str) -> str | None:
        """A new session for a valid token (which is then spent), else None."""
        now = time.monotonic()
        for known, at in list(self._links.items()):
            if hmac.compare_digest(known.encode(), token.encode()):
                del self._links[known]
                if now - at >= _LINK_TTL_S:
                    return None
                session = secrets.token_urlsafe(32)
                self._sessions[session] = now
                while len(self._sessions) > _SESSIONS:
                    self._sessions.popitem(last=False)
                return session
        return None

    def session_of(self, request: Request) -> str | None:
        """The request's valid session, from its cookie or its bearer header."""
        bearer = request.headers.get("authorization", "")
        candidates = []
        if bearer.lower().startswith("bearer "):
            candidates.append(bearer[7:].strip())
        cookie = request.cookie(self.cookie)
        if cookie:
            candidates.append(cookie)
        for candidate in candidates:
            for session in self._sessions:
                if hmac.compare_digest(session.encode(), candidate.encode()):
                    return session
        return None

    def set_cookie(self, session: str) -> str:
        return f"{self.cookie}={session}; HttpOnly; SameSite=Strict; Path=/"

    # --- checks ------------------------------------------------------------------------

    def check_origin(self, request: Request) -> None:
        """The Host, Origin and Sec-Fetch-Site rules; raises HttpError to refuse."""
        host = request.headers.get("host", "")
        if self.loopback and host not in self.hosts:
            raise HttpError(421, f"this dashboard answers only as {sorted(self.hosts)[0]}")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            raise HttpError(403, "requests from other web pages are refused", "cross_origin")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise HttpError(403, "requests from other web pages are refused", "cross_origin")

    def check(self, request: Request) -> str:
        """Every rule for a request that needs a session; returns the session."""
        self.check_origin(request)
        session = self.session_of(request)
        if session is None:
            raise HttpError(
                401,
                "no session: open the link `motes dashboard` printed (each link works once)",
                "unauthorized",
            )
        by_cookie = request.cookie(self.cookie) == session
        if request.method in _UNSAFE and by_cookie and "origin" not in request.headers:
            raise HttpError(403, "a change from a browser must carry its Origin", "cross_origin")
        return session
