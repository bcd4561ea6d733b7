"""The console's front door, an ASGI middleware every request passes before any route runs:

1. body size: ``Content-Length`` beyond the limit → 413 before a byte of the body is read, and
   a streamed (chunked) body is counted as it arrives and cut off at the limit;
2. device pushes (``/device/...``): the device's secret (``Authorization: Bearer`` or the last
   path segment), compared in constant time → 401; a browser (``Origin`` header) → 403;
3. everything else: ``Host`` must be one of the allowed hosts (DNS rebinding) → 400;
   state-changing methods need a same-origin ``Origin``/``Sec-Fetch-Site`` → 403, a JSON body
   → 415, a live session of an account unchanged since login (not disabled, demoted or
   given a new password) → 401 and its anti-CSRF token in ``X-CSRF-Token`` → 403;
   reads need a session too when the console is reachable beyond loopback → 401 / to /login.

Doing this here rather than per route means a new endpoint cannot forget it, and the session
is checked before the body is parsed. Every refusal is logged (warning) with the client address.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from edge_agent.console.auth import LogBudget, Session, SessionBook

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "coalgate_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without a session even when reads need one: the login page and what it loads.
PUBLIC_PATHS = frozenset({"/login", "/api/session", "/api/login", "/favicon.ico"})
DEVICE_KINDS = ("anpr", "scan")


def split_host(value: str) -> tuple[str, int | None]:
    """``"gate1:8080"`` → ``("gate1", 8080)``; ``"[::1]:80"`` → ``("::1", 80)``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    return host, int(port) if port.isdigit() else None


class Guard:
    def __init__(self, app: ASGIApp, *, sessions: SessionBook, bind_host: str,
                 allowed_hosts: list[str], max_body: int, login_for_reads: bool, tls: bool,
                 device_secrets: dict[str, str | None],
                 log: Callable[..., None],
                 account_stamp: Callable[[str], str | None] | None = None) -> None:
        self.app = app
        self.sessions = sessions
        self.max_body = max_body
        self.login_for_reads = login_for_reads
        self.scheme = "https" if tls else "http"
        self.secrets = device_secrets
        self.log = log
        self.account_stamp = account_stamp
        self.budget = LogBudget()
        names = {"localhost", "127.0.0.1", "::1"}
        if bind_host not in ("0.0.0.0", "::", ""):
            names.add(split_host(bind_host)[0])
        self.allowed: set[tuple[str, int | None]] = {(n, None) for n in names}
        self.allowed |= {split_host(h) for h in allowed_hosts}

    def host_ok(self, host: str) -> bool:
        name, port = split_host(host)
        return (name, None) in self.allowed or (name, port) in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            headers[k.decode("latin-1").lower()] = v.decode("latin-1")
        method: str = scope["method"]
        path: str = scope["path"]
        client = scope.get("client") or ("?", 0)
        ip = str(client[0])

        async def refuse(status: int, detail: str, why: str, **extra: str) -> None:
            self.refused(status, why, ip, method, path)
            await _reply(send, status, detail, extra)

        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await refuse(400, "Content-Length is not a number", "bad content-length")
                return
            if int(length) > self.max_body:
                await refuse(413, f"request body of {int(length)} bytes is larger than the "
                             f"console's limit of {self.max_body} bytes", "body too large")
                return

        if path.startswith("/device/"):
            problem = self._device_problem(path, headers)
            if problem is not None:
                await refuse(*problem)
                return
        else:
            host = headers.get("host", "")
            if not self.host_ok(host):
                await refuse(400, f"host {host[:80]!r} is not this console's; open it by one "
                             "of its allowed names (console.allowed_hosts)", "host not allowed")
                return
            token = _cookie(headers.get("cookie", ""))
            now = time.monotonic()
            if method not in SAFE_METHODS:
                cross = self._origin_problem(headers)
                if cross is not None:
                    await refuse(403, cross, "cross-origin")
                    return
                ctype = headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype != "application/json":
                    await refuse(415, "send the request body as JSON (Content-Type: "
                                 "application/json)", "not json")
                    return
                if path != "/api/login":
                    session = self.sessions.get(token, now)
                    if session is None:
                        await refuse(401, "log in first (请先登录)", "no session")
                        return
                    if not self._account_unchanged(session):
                        await refuse(401, "your account was disabled or changed since you "
                                     "logged in; log in first (账号已变更，请先登录)",
                                     "account changed")
                        return
                    if not self.sessions.csrf_ok(session, headers.get(CSRF_HEADER)):
                        await refuse(403, "missing or wrong X-CSRF-Token; reload the page",
                                     "csrf")
                        return
                    scope.setdefault("state", {})["session"] = session
            else:
                # Reading does not count as activity: an open page left alone still idles out.
                session = self.sessions.get(token, now, touch=False)
                if session is not None and not self._account_unchanged(session):
                    self.refused(401, "account changed", ip, method, path)
                    session = None
                scope.setdefault("state", {})["session"] = session
                if (session is None and self.login_for_reads and path not in PUBLIC_PATHS
                        and not path.startswith("/static/")):
                    if path.startswith("/api/") or path.startswith("/slip/"):
                        await _reply(send, 401, "log in first (请先登录)", {})
                    else:
                        await _reply(send, 303, "log in first", {"location": "/login"})
                    return

        await self._limited(scope, receive, send)

    def _account_unchanged(self, session: Session) -> bool:
        """False (and the session dropped) when the account was disabled, demoted or given a
        new password since this session logged in: `coalgate edge user` runs in another
        process, so the accounts file is asked on every request that carries a session."""
        if self.account_stamp is None:
            return True
        if self.account_stamp(session.name) == session.stamp:
            return True
        self.sessions.drop(session.token)
        return False

    def refused(self, status: int, why: str, ip: str, method: str, path: str) -> None:
        held = self.budget.take(f"{ip} {why}", time.monotonic())
        if held < 0:
            return
        extra = {"suppressed": held} if held else {}
        self.log("console request refused", level="warning", status=status, why=why, ip=ip,
                 method=method, path=_loggable(path), **extra)

    def _device_problem(self, path: str, headers: dict[str, str]) -> tuple[int, str, str] | None:
        parts = path.strip("/").split("/")
        kind = parts[1] if len(parts) > 1 else ""
        if "origin" in headers:
            return (403, "device pushes do not come from browsers", "device push from a browser")
        if kind not in DEVICE_KINDS:
            return (404, f"no device endpoint {path[:80]!r}; use /device/anpr or /device/scan",
                    "unknown device endpoint")
        secret = self.secrets.get(kind)
        if not secret:
            key = "camera" if kind == "anpr" else "scanner"
            # 401 like a wrong secret: no credentials can be right for it.
            return (401, f"/device/{kind} is off: no push secret configured; set "
                    f"{key}.push_secret_file in the site config"
                    + (" (and camera.anpr_push = true)" if kind == "anpr" else ""),
                    "no device secret configured")
        given = ""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif len(parts) == 3:
            given = parts[2]
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return (401, "wrong or missing device secret (Authorization: Bearer <secret>)",
                    "bad device secret")
        return None

    def _origin_problem(self, headers: dict[str, str]) -> str | None:
        origin = headers.get("origin")
        if origin is not None:
            expected = f"{self.scheme}://{headers.get('host', '')}".lower()
            if origin.lower() != expected:
                return (f"request from another site ({origin[:80]}) refused; use the console's "
                        "own page")
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request ({site}) refused; use the console's own page"
        return None

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the body counted as it streams in; cut off past the limit."""
        received = 0
        started = False
        cut = False

        async def counted() -> Message:
            nonlocal received, cut
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_body:
                    if not started and not cut:
                        cut = True
                        client = scope.get("client") or ("?", 0)
                        self.refused(413, "streamed body too large", str(client[0]),
                                     scope["method"], scope["path"])
                        await _reply(send, 413, f"request body is larger than the console's "
                                     f"limit of {self.max_body} bytes", {})
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if cut:
                return  # the 413 is already out; whatever the app says now goes nowhere
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not cut:
                raise


def _loggable(path: str) -> str:
    """The path for a log line: a device path's last segment may be the device's secret (a
    camera that cannot send headers), so only ``/device/<kind>`` is kept."""
    if path.startswith("/device/"):
        parts = path.split("/")
        if len(parts) > 3:
            return "/".join(parts[:3])[:80] + "/…"
    return path[:80]


def _cookie(header: str) -> str | None:
    if not header:
        return None
    try:
        jar: SimpleCookie = SimpleCookie(header)
    except Exception:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel else None


async def _reply(send: Send, status: int, detail: str, extra: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if status == 413:
        headers.append((b"connection", b"close"))  # do not wait for the rest of the body
    if status == 401 and "device" in detail:
        headers.append((b"www-authenticate", b"Bearer"))
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
