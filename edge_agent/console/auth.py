"""Console sessions and login throttling. Pure: every call takes the clock (``now``, seconds)
and returns data; the console keeps one :class:`SessionBook` and one :class:`LoginLimiter`.

Sessions live in the gate process only: a restart logs everyone out, which is the safe side.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

__all__ = ["LogBudget", "LoginLimiter", "Session", "SessionBook"]


@dataclass
class Session:
    token: str  # the cookie value
    name: str
    role: str
    csrf: str  # sent back by the page in X-CSRF-Token on every state-changing request
    created: float
    seen: float
    stamp: str | None = None  # AccountStore.stamp at login; a different one ends the session


@dataclass
class SessionBook:
    idle_s: float
    max_s: float
    sessions: dict[str, Session] = field(default_factory=dict)
    max_sessions: int = 256  # a login flood must not grow memory without bound

    def create(self, name: str, role: str, now: float, stamp: str | None = None) -> Session:
        self.expire(now)
        while len(self.sessions) >= self.max_sessions:  # drop the least recently used
            oldest = min(self.sessions.values(), key=lambda s: s.seen)
            del self.sessions[oldest.token]
        s = Session(secrets.token_urlsafe(32), name, role, secrets.token_urlsafe(32), now, now,
                    stamp)
        self.sessions[s.token] = s
        return s

    def get(self, token: str | None, now: float, touch: bool = True) -> Session | None:
        """The live session for a cookie value, or None (unknown, idle too long or too old)."""
        if not token:
            return None
        s = self.sessions.get(token)
        if s is None:
            return None
        if now - s.seen > self.idle_s or now - s.created > self.max_s:
            del self.sessions[token]
            return None
        if touch:
            s.seen = now
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self.sessions.pop(token, None)

    def drop_account(self, name: str) -> None:
        for t in [t for t, s in self.sessions.items() if s.name == name]:
            del self.sessions[t]

    def expire(self, now: float) -> None:
        for t in [t for t, s in self.sessions.items()
                  if now - s.seen > self.idle_s or now - s.created > self.max_s]:
            del self.sessions[t]

    @staticmethod
    def csrf_ok(s: Session, header: str | None) -> bool:
        return bool(header) and hmac.compare_digest(s.csrf.encode(), (header or "").encode())


@dataclass
class LoginLimiter:
    """At most ``per_account`` failed logins per account name and ``per_ip`` per client address
    within ``window_s``; beyond that, logins are refused until the oldest failure ages out.

    Counting per name stops guessing one account's password from many addresses; per address
    stops one machine trying many names."""

    window_s: float = 900.0
    per_account: int = 5
    per_ip: int = 20
    failures: dict[str, deque[float]] = field(default_factory=dict)
    max_keys: int = 4096

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self.failures.get(key)
        if q is None:
            return deque()
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            del self.failures[key]
        return q

    def retry_after(self, name: str, ip: str, now: float) -> float:
        """0 when a login may be tried now, else the seconds to wait."""
        wait = 0.0
        for key, limit in ((f"name:{name}", self.per_account), (f"ip:{ip}", self.per_ip)):
            q = self._recent(key, now)
            if len(q) >= limit:
                wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, name: str, ip: str, now: float) -> None:
        if len(self.failures) >= self.max_keys:
            for key in list(self.failures):
                self._recent(key, now)
            if len(self.failures) >= self.max_keys:  # still full: forget the oldest key
                del self.failures[min(self.failures, key=lambda k: self.failures[k][-1])]
        for key in (f"name:{name}", f"ip:{ip}"):
            self.failures.setdefault(key, deque()).append(now)

    def succeeded(self, name: str) -> None:
        self.failures.pop(f"name:{name}", None)


@dataclass
class LogBudget:
    """At most ``per_window`` log lines per key (client address and reason) per ``window_s``,
    so a flood of refused requests cannot fill the gate's disk with log lines. ``take``
    returns how many lines were held back since the last one let through (-1: hold this one)."""

    window_s: float = 60.0
    per_window: int = 20
    seen: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # start, used, held
    max_keys: int = 1024

    def take(self, key: str, now: float) -> int:
        start, used, held = self.seen.get(key, (now, 0, 0))
        if now - start > self.window_s:
            start, used = now, 0
        if used >= self.per_window:
            self.seen[key] = (start, used, held + 1)
            return -1
        if key not in self.seen and len(self.seen) >= self.max_keys:
            self.seen.clear()  # many addresses at once: start over rather than grow
        self.seen[key] = (start, used + 1, 0)
        return held
