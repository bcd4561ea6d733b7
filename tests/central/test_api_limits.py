"""Limits on the central API (issue 12, item 5), against a real uvicorn server and PostgreSQL:
bodies are refused by size before they are read, the token is checked before the body is read,
and NUL characters or out-of-range dates are 422 with a clear message, never 500.

The upload tests talk raw HTTP over a socket so they can stop sending mid-body: the reply must
come while most of the declared body was never sent, i.e. the server did not wait to read it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from central.api import create_app
from tests.central.api_support import api_settings, auth, token
from tests.support.api_server import Server
from tests.support.pg import make_database

LIMIT = 64 * 1024


@dataclass
class Env:
    base: str
    port: int
    admin: str
    bureau: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    url, drop = make_database(migrated=False)
    try:
        app = create_app(api_settings(API__MAX_BODY_BYTES=str(LIMIT)), url=url,
                         sweep_offline_sites=False)
        with Server(app) as server:
            yield Env(server.base, server.port, token(url, "admin"), token(url, "bureau"))
    finally:
        drop()


def _partial_post(port: int, headers: dict[str, str], sent: bytes) -> tuple[int, dict[str, str]]:
    """POST /api/v1/sites sending ``headers`` and then only ``sent`` of the body; returns the
    status and JSON the server answered with (waiting up to 30 s for it)."""
    head = "POST /api/v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1"))
        if sent:
            sock.sendall(sent)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_a_400_mb_unauthenticated_post_is_refused_without_reading_it(env: Env) -> None:
    # Declared 400 MB, only the headers sent: the answer comes without a byte of the body.
    status, body = _partial_post(env.port, {"Content-Length": str(400 * 1024 * 1024),
                                            "Content-Type": "application/json"}, b"")
    assert status == 413 and "api.max_body_bytes" in body["detail"], body


def test_the_token_is_checked_before_the_body_is_read(env: Env) -> None:
    # Under the size limit, no token: 401 after 1 KiB of a declared 60 KiB body.
    headers = {"Content-Length": str(60 * 1024), "Content-Type": "application/json"}
    status, body = _partial_post(env.port, headers, b"{" + b" " * 1023)
    assert status == 401 and "bearer token" in body["detail"]
    status, body = _partial_post(env.port, {**headers, "Authorization": "Bearer cgt_forged"},
                                 b"{" + b" " * 1023)
    assert status == 401 and "invalid or revoked" in body["detail"]
    # A chunked upload (no declared length, e.g. 400 MB streamed) without a token: 401 after
    # its first chunk, the rest never sent.
    status, body = _partial_post(env.port, {"Transfer-Encoding": "chunked",
                                            "Content-Type": "application/json"},
                                 b"400\r\n" + b" " * 1024 + b"\r\n")
    assert status == 401 and "bearer token" in body["detail"]


def test_a_chunked_upload_is_cut_off_at_the_limit(env: Env) -> None:
    # No declared length: counted as it streams, refused once past the limit, while the
    # client has not finished (no terminating chunk was ever sent).
    piece = b" " * 16384
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    status, body = _partial_post(
        env.port, {"Transfer-Encoding": "chunked", "Content-Type": "application/json",
                   "Authorization": f"Bearer {env.admin}"},
        chunk * (LIMIT // len(piece) + 2))
    assert status == 413 and "api.max_body_bytes" in body["detail"], body


def test_a_body_within_the_limit_still_works(env: Env) -> None:
    r = httpx.post(f"{env.base}/api/v1/sites", json={"id": "x"}, headers=auth(env.admin))
    assert r.status_code == 422  # reached the endpoint's validation: the body was read


def test_nul_characters_are_422_not_500(env: Env) -> None:
    r = httpx.get(f"{env.base}/api/v1/weighings", params={"txn": "t\x00-1"},
                  headers=auth(env.bureau))
    assert r.status_code == 422 and "NUL" in r.json()["message"], r.text
    # A plate filter is checked against the plate grammar first, NUL or not.
    r = httpx.get(f"{env.base}/api/v1/weighings", params={"plate": "陕K\x0012345"},
                  headers=auth(env.bureau))
    assert r.status_code == 422 and "plate" in r.json()["message"], r.text
    r = httpx.get(f"{env.base}/api/v1/alarms", params={"site": "a\x00"},
                  headers=auth(env.bureau))
    assert r.status_code == 422, r.text
    r = httpx.post(f"{env.base}/api/v1/sites", headers=auth(env.admin), json={
        "id": "nul-site", "enterprise": "企业\x00甲", "name": "东磅房",
        "verifier_key": "nul-site+00000000+AQ"})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_out_of_range_days_are_422(env: Env, day: str) -> None:
    r = httpx.get(f"{env.base}/api/v1/tonnage/daily", params={"day": day},
                  headers=auth(env.bureau))
    assert r.status_code == 422 and "9999-12-30" in r.text, r.text
    r = httpx.get(f"{env.base}/api/v1/weighings", params={"from": f"{day}T23:59:59+14:00"},
                  headers=auth(env.bureau))
    assert r.status_code in (200, 422), r.text
