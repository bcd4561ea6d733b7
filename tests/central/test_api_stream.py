"""The live alarm stream over a real HTTP server: alarms committed by the ingest reach SSE
clients within 2 s, each client sees only what its token may, and reconnecting loses nothing."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from central.ingest.worker import Ingestor
from ledger.keys import SignerKey
from tests.central.api_support import Gate, api_settings, auth, token
from tests.support.api_server import Server
from tests.support.pg import make_database


@dataclass
class Env:
    url: str
    base: str
    ingestor: Ingestor
    a: Gate
    b: Gate
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    url, drop = make_database(migrated=False)
    tmp = tmp_path_factory.mktemp("stream")
    try:
        from central.api import create_app

        app = create_app(api_settings(API__SSE_PING_S="1"), url=url, sweep_offline_sites=False)
        with Server(app) as server, psycopg.connect(url) as conn:
            tokens = {"admin": token(url, "admin"), "bureau": token(url, "bureau"),
                      "ent_b": token(url, "enterprise", "企业乙")}
            a, b = Gate("live-a", tmp, "企业甲"), Gate("live-b", tmp, "企业乙")
            for gate in (a, b):
                r = httpx.post(f"{server.base}/api/v1/sites", json=gate.enrol_body(),
                               headers=auth(tokens["admin"]))
                assert r.status_code == 201, r.text
            yield Env(url, server.base, Ingestor(conn, SignerKey.generate("w")), a, b, tokens)
            a.close()
            b.close()
    finally:
        drop()


class Listener:
    """Reads an SSE stream in a thread and queues its events as (event, id, data)."""

    def __init__(self, base: str, tok: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, str | None, Any]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._cm = self._client.stream("GET", f"{base}/api/v1/alarms/stream",
                                       headers={**auth(tok), **(headers or {})})
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        kind, _, _ = self.next(5)
        assert kind == "ready"

    def _read(self) -> None:
        event, ident = "message", None
        data: list[str] = []
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if data:
                        self.events.put((event, ident, json.loads("\n".join(data))))
                    event, ident, data = "message", None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    ident = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except httpx.HTTPError:
            pass

    def next(self, timeout: float) -> tuple[str, str | None, Any]:
        return self.events.get(timeout=timeout)

    def alarms(self, timeout: float) -> list[dict[str, Any]]:
        """Alarm events until none arrives for ``timeout`` seconds."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                kind, _, data = self.next(timeout)
            except queue.Empty:
                return out
            if kind == "alarm":
                out.append(data)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self._client.close()


def test_new_alarm_reaches_the_stream_within_two_seconds(env: Env):
    listener = Listener(env.base, env.tokens["bureau"])
    try:
        txn = env.a.truck("陕K55555", released=False, ticket=None)
        env.a.push(env.ingestor)  # commits; the trigger notifies; the stream reads
        kind, ident, alarm = listener.next(2.0)
        assert kind == "alarm" and alarm["site"] == "live-a" and alarm["txn"] == txn
        assert ident == str(alarm["id"])
        assert alarm["code"] == "escape"
        assert listener.alarms(0.5) == []  # the gate's first truck: no barrier state to force
    finally:
        listener.close()


def test_enterprise_stream_carries_only_its_sites(env: Env):
    mine = Listener(env.base, env.tokens["ent_b"])
    try:
        # overload at someone else's site (no ticket: nothing for the central to re-check)
        env.a.truck("陕K66666", gross=60000, limit=49000, ticket=None)
        env.a.push(env.ingestor)
        env.b.truck("晋A77777", gross=60000, limit=49000, ticket=None)
        env.b.push(env.ingestor)
        got = mine.alarms(1.5)
        assert got and {a["site"] for a in got} == {"live-b"}
        assert {a["code"] for a in got} == {"overload"}
    finally:
        mine.close()


def test_reconnecting_with_last_event_id_misses_nothing(env: Env):
    first = Listener(env.base, env.tokens["bureau"])
    env.a.truck("陕K80001", gross=60000, limit=49000, ticket=None)
    env.a.push(env.ingestor)
    seen = first.alarms(1.0)
    first.close()
    last = max(a["id"] for a in seen)
    # While nobody listens, two more cheats.
    env.a.truck("陕K80002", gross=60000, limit=49000, ticket=None)
    env.a.truck("陕K80003", gross=60000, limit=49000, ticket=None)
    env.a.push(env.ingestor)
    again = Listener(env.base, env.tokens["bureau"], {"Last-Event-ID": str(last)})
    try:
        missed = again.alarms(1.0)
        assert [a["detail"]["plate"] for a in missed] == ["陕K80002", "陕K80003"]
        assert all(a["id"] > last for a in missed)
    finally:
        again.close()
