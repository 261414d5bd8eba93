"""Who may change things: read-only without a token; every action and every enqueue needs the
token.

Two ways to show it:

- API clients send ``Authorization: Bearer TOKEN``.
- A browser signs in once (``POST /login`` with the token, from the page's form) and gets a
  session cookie (HttpOnly, SameSite=Strict). Its actions are POSTs that must also carry the
  session's CSRF token in the ``X-CSRF-Token`` header (``GET /api/v1/session`` hands it to the
  page's own script; another site can neither read it nor set the header on a cross-site form).
  A POST whose ``Origin`` names another site is refused whatever it carries.

Request bodies are capped (``BodyLimit``): the largest job payload is about 99.5 kB.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from typing import Any

from fastapi import HTTPException, Request

SESSION_COOKIE = "qq_session"
CSRF_HEADER = "x-csrf-token"
MAX_BODY = 256 * 1024
MAX_SESSIONS = 1000


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    def __init__(self, token: str) -> None:
        self.token = token
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
        self._lock = threading.Lock()

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def open_session(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session] = None
            while len(self._sessions) > MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
        return session

    def close_session(self, session: str | None) -> None:
        with self._lock:
            self._sessions.pop(session or "", None)

    def session_of(self, request: Request) -> str | None:
        session = request.cookies.get(SESSION_COOKIE)
        with self._lock:
            return session if session is not None and session in self._sessions else None

    def csrf_of(self, session: str) -> str:
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def require(self, request: Request) -> None:
        """Raise 401/403 unless ``request`` may act (bearer token, or session + CSRF token)."""
        check_origin(request)
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not self.token_ok(given.strip()):
                raise HTTPException(403, "the bearer token is wrong")
            return
        session = self.session_of(request)
        if session is None:
            raise HTTPException(401, "this action needs the dashboard's token: send "
                                "'Authorization: Bearer TOKEN' (or sign in on the page)",
                                headers={"WWW-Authenticate": "Bearer"})
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.csrf_of(session).encode()):
            raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token header)")


def check_origin(request: Request) -> None:
    """Refuse a request sent by a page of another site (browsers always send Origin on a
    cross-site POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin.split("://", 1)[-1] != host:
        raise HTTPException(403, f"cross-site request refused (Origin {origin[:100]!r})")


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 before the app parses it."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send, self.limit)
            return
        received = 0
        started = False

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = (b'{"detail":"request body too large: at most %d bytes (a job payload may be about '
            b'99.5 kB)"}' % limit)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
