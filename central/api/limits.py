"""Request limits, applied before any endpoint reads a byte of the body (issue 12, item 5).

An ASGI middleware, not a FastAPI dependency: FastAPI reads and parses a JSON body *before* it
runs the dependencies that check the token, so a 400 MB POST without a token used to be read
into memory first. Here, for every request that carries a body:

1. a declared ``Content-Length`` above ``api.max_body_bytes`` is refused with 413 at once;
2. under /api/, the bearer token is looked up before the body is read: no valid token, 401;
3. the body as it streams in is counted, and the request is refused with 413 as soon as it
   passes the limit (chunked uploads declare no length).

The server answers without reading the rest of the upload; uvicorn then closes the connection.
Errors that come from odd *values* rather than odd sizes (a NUL character PostgreSQL cannot
store, a date whose next day is past year 9999) are answered 422 by :func:`install`'s
handlers, never 500.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from central.auth import lookup_token

__all__ = ["BodyLimit", "install"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths under the API prefix that take a body without a token: none today. Kept explicit so a
# future public POST is a conscious choice.
_PUBLIC_WITH_BODY: frozenset[str] = frozenset()


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI turns any other error while reading a body into a 400
    "error parsing the body", but lets an HTTPException through to its handler."""


async def _reply(send: Send, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
    body = json.dumps({"detail": message}, ensure_ascii=False).encode("utf-8")
    raw = [(b"content-type", b"application/json; charset=utf-8"),
           (b"content-length", str(len(body)).encode()),
           # The rest of the upload is not read: the connection cannot be reused.
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class BodyLimit:
    """The middleware. ``max_bytes``: the largest body accepted; ``api_prefix``: where a token
    is required before a body is read."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, api_prefix: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_prefix = api_prefix

    def _too_large(self, got: str) -> str:
        return (f"request body too large: {got}; the limit is {self.max_bytes} bytes "
                "(api.max_body_bytes in the central config)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length_text = _header(scope, b"content-length")
        chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
        length: int | None = None
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError:
                await _reply(send, 400, f"Content-Length {length_text[:40]!r} is not a number")
                return
        has_body = chunked or (length is not None and length > 0)
        if not has_body:
            await self.app(scope, receive, send)
            return
        if length is not None and length > self.max_bytes:
            await _reply(send, 413, self._too_large(f"Content-Length {length}"))
            return
        path: str = scope.get("path", "")
        if path.startswith(self.api_prefix + "/") and path not in _PUBLIC_WITH_BODY:
            refusal = await self._check_token(scope)
            if refusal is not None:
                await _reply(send, 401, refusal, {"WWW-Authenticate": "Bearer"})
                return
        await self._counted(scope, receive, send)

    async def _check_token(self, scope: Scope) -> str | None:
        """Why the request's bearer token is refused, or None when it is valid."""
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ("missing bearer token: send 'Authorization: Bearer <token>' "
                    "(create one with `coalgate central token create --role ROLE`)")
        app = scope.get("app")
        pool: ConnectionPool | None = getattr(getattr(app, "state", None), "pool", None)
        if pool is None:
            return None  # not started (no database yet): the endpoint's own check answers

        def lookup() -> bool:
            with pool.connection() as conn:
                return lookup_token(conn, token.strip()) is not None

        try:
            ok = await run_in_threadpool(lookup)
        except psycopg.Error:
            return None  # the endpoint's own check will answer (503/500 path), not us
        return None if ok else "invalid or revoked token"

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, self._too_large(f"more than {self.max_bytes} bytes "
                                                         "sent"), {"Connection": "close"})
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge as exc:  # an app that is not FastAPI's router (a mount) let it out
            if not started:
                await _reply(send, 413, str(exc.detail))


async def _nul_or_range(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OverflowError):
        message = (f"a date or number is out of range ({exc}); dates must lie between "
                   "0001-01-02 and 9999-12-30")
    elif "NUL" in str(exc) or "0x00" in str(exc) or "\\u0000" in str(exc):
        message = ("text may not contain the NUL character (0x00, \\u0000); remove it and "
                   "send the request again")
    else:
        message = f"a value cannot be stored: {str(exc)[:200]}"
    return JSONResponse(status_code=422, content={"message": message, "detail": message})


def install(app: FastAPI, *, max_bytes: int, api_prefix: str) -> None:
    """Add the body limit and the 422 handlers for unstorable values to ``app``."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes, api_prefix=api_prefix)
    # psycopg refuses NUL in text before sending; PostgreSQL refuses \u0000 in jsonb
    # (UntranslatableCharacter) and values out of a column's range: all DataError.
    app.add_exception_handler(psycopg.DataError, _nul_or_range)
    app.add_exception_handler(OverflowError, _nul_or_range)
