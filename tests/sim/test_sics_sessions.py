"""MT-SICS over TCP: a closed connection's session is dropped (it used to stay for ever and
keep ``SIR`` answers going to a dead socket)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from tests.sim.conftest import SimThread, wait_for


def test_closed_tcp_connections_leave_no_sessions(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    sics = sim.sim.sics
    assert sics is not None
    tcp = sim.endpoints["serial"]["sics"]["tcp"]
    for _ in range(5):
        with socket.create_connection((tcp["host"], tcp["port"]), timeout=5) as conn:
            conn.sendall(b"SIR\r\n")  # a repeating session: the worst case to leave behind
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"S ")
            reader.close()
    wait_for(lambda: sics.session_count == 0, what="every closed session dropped")
    # A live connection keeps its session until it closes.
    with socket.create_connection((tcp["host"], tcp["port"]), timeout=5) as conn:
        conn.sendall(b"SI\r\n")
        assert conn.makefile("rb").readline().startswith(b"S ")
        assert sics.session_count == 1
    wait_for(lambda: sics.session_count == 0, what="the last session dropped")
