"""Serving an ASGI app for real, for tests that need a socket (SSE clients, browsers);
the in-process TestClient covers the rest."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from tests.support.net import free_port


class Server:
    """The app under uvicorn on a free port, in a thread (for SSE clients and browsers)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the API server did not start within 20 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the API server did not stop"
