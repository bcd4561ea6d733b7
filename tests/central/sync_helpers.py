"""Helpers for the MQTT + PostgreSQL sync tests: workers, gates, and the central-side audit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from central.api.schemas import SiteIn
from central.db import DatabaseSettings
from central.ingest import store as db_store
from central.ingest.settings import IngestSettings
from central.ingest.worker import IngestStats, run_ingest
from central.sites import enrol_site
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.protocol import topic
from ledger.entry import ZERO_HASH, Entry
from ledger.keys import SignerKey, write_signer_file
from ledger.merkle import root_at
from ledger.store import LedgerStore

REPO = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tare_body(site: str, i: int) -> dict[str, object]:
    """An honest tare weighing body (docs/entry-kinds.md) so projections accept it."""
    return {
        "txn": f"{site}-20261128-{i}", "pass": "tare", "plate": f"陕K{10000 + i}",
        "plate_conf_pm": 990, "plate_source": "anpr", "axles": 6, "weight_kg": 15000 + i,
        "gross_kg": None, "tare_kg": 15000 + i, "net_kg": None, "tare_source": "measured",
        "tare_seq": None, "ticket_id": None, "limit_kg": 49000, "decision": "release",
        "reasons": [], "stable_ms": 1500, "snapshot_sha256": None,
    }


def weigh_through_outage(store: LedgerStore, box: Any, site: str, first: int, seconds: float,
                         every_s: float, max_block_s: float, min_entries: int = 0) -> int:
    """Append a weighing every ``every_s`` for ``seconds`` while the broker is down, and on
    until at least ``min_entries`` were appended (so a slow machine builds the same backlog,
    only later); returns the next index. Each append must return within ``max_block_s``:
    appends are local and durable and never wait for the network (a generous bound: it
    catches blocking on a reconnect, not slowness)."""
    n = first
    end = time.monotonic() + seconds
    while time.monotonic() < end or n - first < min_entries:
        t0 = time.monotonic()
        store.append("weighing", tare_body(site, n))
        box.notify()
        n += 1
        assert time.monotonic() - t0 < max_block_s, "append blocked while the broker was down"
        time.sleep(every_s)
    return n


def acked_all(box: Any, store: LedgerStore) -> bool:
    """The outbox holds an ack for every entry of its ledger."""
    return bool(box.acked_seq == store.size - 1)


def cosigned_at(box: Any, size: int) -> bool:
    """The outbox holds the witness's cosigned checkpoint of tree size ``size``."""
    return f"\n{size}\n" in (box.cosigned_checkpoint or "")


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class ThreadWorker:
    stop: threading.Event
    thread: threading.Thread
    result: list[IngestStats] = field(default_factory=list)

    def halt(self) -> IngestStats:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "ingest worker did not stop"
        return self.result[0]


def start_worker(url: str, mqtt: MqttSettings, group: str, tmp: Path,
                 name: str = "w") -> ThreadWorker:
    settings = IngestSettings(
        database=DatabaseSettings(url=url),
        mqtt=mqtt,
        witness_key_file=tmp / "witness.key",
        share_group=group,
        client_id=unique(f"ingest-{name}"),
    )
    stop, ready = threading.Event(), threading.Event()
    w = ThreadWorker(stop, threading.Thread(target=lambda: None))

    def run() -> None:
        w.result.append(run_ingest(settings, stop, ready=ready, url=url))

    w.thread = threading.Thread(target=run, name=f"ingest-{name}", daemon=True)
    w.thread.start()
    assert ready.wait(15), "ingest worker did not connect and subscribe"
    return w


def write_worker_config(path: Path, url: str, mqtt: MqttSettings, group: str,
                        witness: Path) -> Path:
    lines = [
        "[database]", f'url = "{url}"',
        "[mqtt]", f'host = "{mqtt.host}"', f"port = {mqtt.port}", "keepalive = 5",
    ]
    if mqtt.username:
        lines += [f'username = "{mqtt.username}"', f'password = "{mqtt.password}"']
    lines += ["[witness]", f'key_file = "{witness}"', "[ingest]", f'share_group = "{group}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def start_worker_proc(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "central.ingest", "--config", str(config)],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def start_gate_proc(ledger: Path, signer_file: Path, site: str, port: int, count: int,
                    interval: float, log: Path, batch: int = 50) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.central.gate_proc", str(ledger), str(signer_file),
             site, str(port), str(count), str(interval), str(batch)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@dataclass
class Gate:
    site: str
    key: SignerKey
    path: Path
    signer_file: Path

    def open(self) -> LedgerStore:
        return LedgerStore.open(self.path, site=self.site, signer=self.key)


def make_gate(url: str, tmp: Path, prefix: str = "mine") -> Gate:
    site = unique(prefix)
    key = SignerKey.generate(site)
    signer_file = tmp / f"{site}.key"
    write_signer_file(signer_file, key)
    with psycopg.connect(url) as conn:
        enrol_site(conn, SiteIn(id=site, enterprise="E", name=site,
                                verifier_key=key.verifier.to_text()))
    return Gate(site, key, tmp / f"{site}.db", signer_file)


def central_count(url: str, site: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM entries WHERE site = %s", (site,)).fetchone()
    assert row is not None
    return int(row[0])


def audit_central(url: str, gate: Gate) -> int:
    """Every gate entry stored centrally exactly once, in order, verifying, same Merkle root."""
    with LedgerStore.open(gate.path, site=gate.site) as ledger:
        size = ledger.size
        want = [se.hash for se in ledger.iter_entries(0, size)]
        want_root = ledger.root(size)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        rows = cur.execute(
            "SELECT seq, leaf, hash, sig FROM entries WHERE site = %s ORDER BY seq", (gate.site,)
        ).fetchall()
        seqs = [r[0] for r in rows]
        assert seqs == list(range(len(seqs))), "central has gaps or duplicate seqs"
        assert len(rows) == size, f"central holds {len(rows)} of {size} entries"
        prev = ZERO_HASH
        for seq, leaf, h, sig in rows:
            entry = Entry.from_leaf(bytes(leaf))
            assert entry.seq == seq and entry.prev == prev, f"chain broken at seq {seq}"
            assert gate.key.verifier.verify(bytes(leaf), bytes(sig)), f"bad signature at {seq}"
            prev = bytes(h)
        assert [bytes(r[2]) for r in rows] == want
        assert root_at(size, db_store.DbNodes(cur, gate.site)) == want_root
        state = cur.execute("SELECT verified_seq FROM site_state WHERE site = %s",
                            (gate.site,)).fetchone()
        assert state is not None and state[0] == size - 1
    return size


def clear_retained(mqtt_settings: MqttSettings, sites: list[str]) -> None:
    """Remove the retained status messages a test left on a shared broker."""
    client = make_client(mqtt_settings, unique("cleanup"))
    client.connect(mqtt_settings.host, mqtt_settings.port)
    client.loop_start()
    for site in sites:
        client.publish(topic(site, "status"), b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def alarm_codes(url: str, site: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT code FROM alarms WHERE site = %s ORDER BY id", (site,)).fetchall()]
